"""A person's own image for the model: a drawing or an uploaded PNG/JPEG, prepared as its card says.

The image is converted to the card's channels, fitted into its input size (a drawing or a dark-on-light
photo of a digit is centred and inverted as MNIST's white-on-black digits are) and normalised with the
card's mean and std. A corrupt, empty or huge file raises :class:`core.errors.UserError` (one sentence).
"""
from __future__ import annotations

import io

import numpy as np
import torch
from torch import nn

from core.errors import UserError
from core.models.cards import ModelCard


MAX_IMAGE_MB = 10
MAX_PIXELS = 40_000_000
IMAGE_TYPES = ("png", "jpg", "jpeg")


def _normalise(pixels: np.ndarray, card: ModelCard) -> torch.Tensor:
    """(H,W,C) pixels in [0, 1] -> the model's normalised (C,H,W) tensor."""
    x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float()
    mean = torch.tensor(card.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(card.std, dtype=torch.float32).view(-1, 1, 1)
    return (x - mean) / std


def _centred(gray: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A light-on-dark drawing (H,W in [0,1]) cropped to its ink, fitted into ``size`` as MNIST's
    digits are (20 of 28 pixels, centred), or to the whole frame less one pixel for small inputs."""
    from PIL import Image

    h, w = size
    ink = gray > 0.1
    if not ink.any():
        return np.zeros(size, dtype=np.float32)
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    crop = gray[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    box = max(1, round(min(h, w) * 20 / 28)) if min(h, w) >= 20 else max(1, min(h, w) - 1)
    scale = box / max(crop.shape)
    new = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    small = np.asarray(Image.fromarray((crop * 255).astype(np.uint8)).resize(new, Image.LANCZOS), dtype=np.float32) / 255
    out = np.zeros(size, dtype=np.float32)
    top, left = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    out[top:top + small.shape[0], left:left + small.shape[1]] = small
    return out


def from_drawing(rgba: np.ndarray, card: ModelCard) -> torch.Tensor | None:
    """A canvas drawing (H,W,4 RGBA, white ink on black) as the model's input; None when blank."""
    rgba = np.asarray(rgba, dtype=np.float32) / 255.0
    gray = rgba[..., :3].mean(-1) * rgba[..., 3]
    if gray.max() <= 0.1:
        return None
    _, h, w = card.input_shape
    fitted = _centred(gray, (h, w))
    return _normalise(np.repeat(fitted[..., None], card.input_shape[0], axis=2), card)


def from_upload(data: bytes, filename: str, card: ModelCard, max_mb: int = MAX_IMAGE_MB) -> tuple[torch.Tensor, str]:
    """(normalised input, what was done to it) for an uploaded PNG or JPEG file."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UserError(f"'{filename}' is empty; upload a PNG or JPEG image.")
    if len(data) > max_mb * 2 ** 20:
        raise UserError(f"'{filename}' is {len(data) / 2 ** 20:.0f} MB; images up to {max_mb} MB are read.")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            kind, (width, height) = probe.format, probe.size
            if kind not in ("PNG", "JPEG"):
                raise UserError(f"'{filename}' is a {kind} image; upload a PNG or JPEG image.")
            if width * height > MAX_PIXELS:
                raise UserError(f"'{filename}' has {width} x {height} pixels; images up to "
                                f"{MAX_PIXELS // 1_000_000} megapixels are read.")
            probe.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            channels, h, w = card.input_shape
            if channels == 1:
                gray = np.asarray(image.convert("L"), dtype=np.float32) / 255
                border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
                inverted = border.mean() > 0.5            # dark ink on light paper: MNIST is light on dark
                gray = 1 - gray if inverted else gray
                pixels = _centred(gray, (h, w))[..., None]
                note = (f"{width} x {height} {kind} read as grey, "
                        + ("inverted (dark on light), " if inverted else "") + f"centred into {w} x {h}")
            else:
                pixels = np.asarray(image.convert("RGB").resize((w, h), Image.BILINEAR), dtype=np.float32) / 255
                note = f"{width} x {height} {kind} resized to {w} x {h}"
    except UserError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UserError(f"'{filename}' is not a readable PNG or JPEG image ({type(exc).__name__}).") from exc
    return _normalise(pixels, card), note


@torch.no_grad()
def top_predictions(model: nn.Module, image: torch.Tensor, k: int = 3) -> list[tuple[int, float]]:
    """The ``k`` most probable classes of one normalised image, with their softmax probabilities."""
    from core.models.compute import predict_logits

    probs = torch.softmax(predict_logits(model, image[None])[0].double(), 0)
    values, classes = probs.topk(min(k, len(probs)))
    return [(int(c), float(v)) for c, v in zip(classes, values)]
