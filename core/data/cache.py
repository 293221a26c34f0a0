"""The on-disk cache of decompressed, extracted and decoded data.

Raw files are never written next to the user's data (it may be read-only): anything decompressed,
extracted or decoded goes to :func:`cache_dir`, written to a temporary name and renamed into place.

Every cache entry is keyed by where its data came from and by what it contains:
:func:`source_key` is the sha256 of the data folder's path and of each source file's name and
sha256 (:func:`file_digest`), so two copies of a dataset whose files have the same sizes but other
bytes (a corrupt download, relabelled test labels) never share an entry. The key is also stored
inside each entry and compared when it is read back. A file is hashed once per process; later
calls reuse the digest while the file's path, size and modification time are unchanged.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import tarfile
import threading
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from core.errors import UserError

if TYPE_CHECKING:
    import torch


_CACHE_FORMAT = 2  # bump when the layout of cached .pt files changes (2: keyed by source content)
_DIGESTS: dict[tuple[str, int, int], str] = {}
_DIGESTS_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Writable folder for decompressed/decoded data: $UNLEARN_CACHE_DIR or ~/.cache/unlearning-lab."""
    env = os.environ.get("UNLEARN_CACHE_DIR", "").strip()
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "unlearning-lab"
    where = f"The cache folder {path} (set by UNLEARN_CACHE_DIR)" if env else f"The cache folder {path}"
    if path.exists() and not path.is_dir():
        raise UserError(f"{where} is a file, not a folder; point UNLEARN_CACHE_DIR at a folder.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{where} cannot be created ({err.strerror or err}); point UNLEARN_CACHE_DIR at a "
                        f"writable folder.") from None
    return path.resolve()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, hex; remembered in-process by (path, size, modification time)."""
    try:
        stat = os.stat(path)
        memo = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
        with _DIGESTS_LOCK:
            known = _DIGESTS.get(memo)
        if known is not None:
            return known
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as err:
        raise UserError(f"Could not read {path} ({err.strerror or err}).") from None
    with _DIGESTS_LOCK:
        _DIGESTS[memo] = digest.hexdigest()
    return _DIGESTS[memo]


def source_key(folder: Path, files: Iterable[tuple[str, Path]]) -> str:
    """Cache key of data read from ``folder``: sha256 over the folder's path and each (name, sha256
    of the file's bytes), 24 hex digits."""
    digest = hashlib.sha256(f"source-key-v1\n{folder}\n".encode())
    for name, path in files:
        digest.update(f"{name}\t{file_digest(path)}\n".encode())
    return digest.hexdigest()[:24]


def _tmp_name(path: Path) -> Path:
    """A sibling temp name unique to this process (write there, then rename into place)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


_GZIP_MIN_BYTES = 18   # header (10) + trailer (8)


def _unpacked_size(src: Path) -> int:
    """Uncompressed size: gzip's ISIZE trailer (idx files are < 4 GiB) or the file size."""
    size = src.stat().st_size
    if src.suffix != ".gz":
        return size
    if size < _GZIP_MIN_BYTES:
        raise UserError(f"{src} is {'empty' if size == 0 else 'truncated'} ({size} bytes), not a gzip file; "
                        "replace it with a complete copy.")
    with open(src, "rb") as fh:
        fh.seek(-4, os.SEEK_END)
        return struct.unpack("<I", fh.read(4))[0]


def _materialise(src: Path, dst: Path) -> None:
    """Put an uncompressed copy of ``src`` at ``dst`` unless one is there (``dst`` lives in a folder
    keyed by ``src``'s content, :func:`source_key`, and appears only complete, by a rename). An
    empty, truncated or corrupt ``src`` is one sentence naming it."""
    expected = _unpacked_size(src)
    if dst.is_file() and dst.stat().st_size == expected:
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(dst)
    try:
        opener = gzip.open if src.suffix == ".gz" else open
        with opener(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, length=1 << 20)
            written = fout.tell()
        if written % 2 ** 32 != expected:
            raise EOFError(f"{written} bytes decompressed, the file's trailer says {expected}")
        os.replace(tmp, dst)
    except (OSError, EOFError, zlib.error) as err:
        tmp.unlink(missing_ok=True)
        raise UserError(f"Could not decompress {src}: it is truncated or corrupt ({err}).") from err


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


def _read_tensor_cache(pt: Path, source: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(uint8 images, labels) from a cache file written by us from the data keyed ``source``
    (:func:`source_key`), or None if absent, unusable or made from other data."""
    import torch     # here, not above: finding the files (core.data.locate) needs no torch

    if not pt.is_file():
        return None
    try:
        blob = torch.load(pt, weights_only=True)
        if blob.get("format") != _CACHE_FORMAT or blob.get("source") != source:
            return None
        images, labels = blob["images"], blob["labels"]
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            return None
        return images, labels.to(torch.int64)
    except Exception:  # noqa: BLE001 - a damaged cache file is simply rebuilt
        return None


def _write_tensor_cache(pt: Path, images: torch.Tensor, labels: torch.Tensor, source: str) -> None:
    """Atomically save decoded tensors, with the key of the data they came from, so the next load
    skips decoding. A cache that cannot be written (a full disk) is skipped, not an error."""
    import torch

    tmp = _tmp_name(pt)
    try:
        pt.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": _CACHE_FORMAT, "source": source, "images": images, "labels": labels}, tmp)
        os.replace(tmp, pt)
    except (OSError, RuntimeError):   # torch reports a failed write as RuntimeError
        tmp.unlink(missing_ok=True)


def cached_tensors(pt: Path, source: str, decode) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images, labels) from the cache file ``pt`` written from the data keyed ``source``, else
    ``decode()``'s, which are then written there (:func:`_write_tensor_cache`) for the next load."""
    cached = _read_tensor_cache(pt, source)
    if cached is not None:
        return cached
    images, labels = decode()
    _write_tensor_cache(pt, images, labels, source)
    return images, labels


def write_marker(path: Path, text: str) -> None:
    """A small text file written atomically (a cache entry's record of its sources)."""
    tmp = _tmp_name(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UserError(f"Could not write to the cache {path.parent} ({err.strerror or err}).") from None
