"""Atomic writes: a result is either absent or complete, never half-written.

We write to a temporary file in the destination's folder, flush it to disk, then
`os.replace` it over the destination. A crash at any moment leaves the old file (or no
file), because a rename within one filesystem is atomic. A folder (a checkpoint, a
release, an exported model) is built the same way: in a temporary folder beside it,
renamed into place when complete (`staged_dir`, `replace_dir`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

from .errors import UserError


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file next to `path`; on success rename it over `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                   dir=path.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give normal permissions
    except OSError as e:
        raise UserError(f"cannot write to {path.parent}: {e.strerror}; "
                        "choose a writable output directory") from None
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """A temporary folder next to `out` that becomes `out` when the block ends well,
    and is deleted when it does not (`--out` names the folder in the error)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as e:
        raise UserError(f"cannot write to {out.parent}: {e.strerror}; choose a "
                        "writable --out") from None
    try:
        yield tmp
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(src: Path, dst: Path) -> None:
    """Rename src to dst; an existing dst is moved aside first and then deleted."""
    if dst.is_dir() and any(dst.iterdir()):
        trash = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old.", dir=dst.parent))
        os.replace(dst, trash / dst.name)
        os.replace(src, dst)
        shutil.rmtree(trash)
    else:
        os.replace(src, dst)  # a rename may replace an empty folder
