"""The on-disk cache of decompressed, extracted and decoded data.

Raw files are never written next to the user's data (it may be read-only): anything decompressed,
extracted or decoded goes to :func:`cache_dir`, written to a temporary name and renamed into place.
"""
from __future__ import annotations

import gzip
import os
import shutil
import struct
import tarfile
from pathlib import Path, PurePosixPath

import torch

from core.errors import UserError


_CACHE_FORMAT = 1  # bump when the layout of cached .pt files changes


def cache_dir() -> Path:
    """Writable folder for decompressed/decoded data: $UNLEARN_CACHE_DIR or ~/.cache/unlearning-lab."""
    env = os.environ.get("UNLEARN_CACHE_DIR")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "unlearning-lab"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def _tmp_name(path: Path) -> Path:
    """A sibling temp name unique to this process (write there, then rename into place)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _unpacked_size(src: Path) -> int:
    """Uncompressed size: gzip's ISIZE trailer (idx files are < 4 GiB) or the file size."""
    if src.suffix != ".gz":
        return src.stat().st_size
    with open(src, "rb") as fh:
        fh.seek(-4, os.SEEK_END)
        return struct.unpack("<I", fh.read(4))[0]


def _materialise(src: Path, dst: Path) -> None:
    """Put an uncompressed copy of ``src`` at ``dst`` unless an up-to-date one is there."""
    if dst.is_file() and dst.stat().st_size == _unpacked_size(src):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(dst)
    try:
        opener = gzip.open if src.suffix == ".gz" else open
        with opener(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, length=1 << 20)
        os.replace(tmp, dst)
    except (OSError, EOFError) as err:
        tmp.unlink(missing_ok=True)
        raise UserError(f"Could not decompress {src} ({err}).") from err


def _safe_extract(tar_path: Path, dest: Path) -> None:
    """Extract ``tar_path`` into ``dest`` once, refusing absolute, '..' or non-regular entries."""
    tmp = _tmp_name(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(tar_path, "r:*") as tf:
            members = tf.getmembers()
            for m in members:
                parts = PurePosixPath(m.name).parts
                if m.name.startswith(("/", "\\")) or ".." in parts or not (m.isfile() or m.isdir()):
                    raise UserError(f"The archive {tar_path} contains an unsafe entry {m.name!r}; "
                                    f"refusing to extract it.")
            tf.extractall(tmp, members=members, filter="data")
        dest.mkdir(parents=True, exist_ok=True)
        for entry in tmp.iterdir():
            if not (dest / entry.name).exists():
                os.replace(entry, dest / entry.name)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise UserError(f"The archive {tar_path} could not be extracted ({err}).") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_tensor_cache(pt: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(uint8 images, labels) from a cache file written by us, or None if absent/unusable."""
    if not pt.is_file():
        return None
    try:
        blob = torch.load(pt, weights_only=True)
        if blob.get("format") != _CACHE_FORMAT:
            return None
        images, labels = blob["images"], blob["labels"]
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            return None
        return images, labels.to(torch.int64)
    except Exception:  # noqa: BLE001 - a damaged cache file is simply rebuilt
        return None


def _write_tensor_cache(pt: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Atomically save decoded tensors so the next load skips decoding."""
    pt.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(pt)
    torch.save({"format": _CACHE_FORMAT, "images": images, "labels": labels}, tmp)
    os.replace(tmp, pt)
