"""The code behind the book, inside the book: which commit built it, and its source.

A PDF that quotes `llm_reference` and attaches experiments that import it is not
much use without that package. So every edition says which version and commit it
was built from and carries the source itself as an attachment, a `.tar.gz` of the
repository's tracked files (all files under the source root when there is no git).
The archive is deterministic: sorted names, zero timestamps and owners, so an
unchanged tree gives the same bytes and the PDF stays byte-identical.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

from . import reuse

ARCHIVE = "llm-from-scratch-src.tar.gz"
PREFIX = "llm-from-scratch"  # the folder the archive unpacks into
SKIP = {".git", ".venv", "dist", "__pycache__", ".pytest_cache", ".ruff_cache",
        "runs", "data", "node_modules"}  # when there is no git to ask


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def revision(root: Path) -> dict[str, object] | None:
    """{"commit", "dirty"} of the git checkout at `root`, or None without git."""
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return None
    status = _git(root, "status", "--porcelain", "--untracked-files=no") or ""
    return {"commit": commit.strip(), "dirty": bool(status.strip())}


def files(root: Path) -> list[Path]:
    """The files to ship: git's tracked files (as they are in the working tree),
    or every file under `root` outside build, cache and data folders."""
    listed = _git(root, "ls-files", "-z")
    if listed is not None:
        names = [n for n in listed.split("\0") if n]
        return sorted(root / n for n in names if (root / n).is_file())
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and not SKIP & set(p.relative_to(root).parts[:-1]))


def _members(root: Path) -> list[tuple[str, int, bytes]]:
    """(name in the archive, mode, bytes) of each file to ship."""
    return [(f"{PREFIX}/{path.relative_to(root).as_posix()}",
             0o755 if path.stat().st_mode & 0o111 else 0o644, path.read_bytes())
            for path in files(root)]


def _pack(members: list[tuple[str, int, bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, mode, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.uid, info.gid = len(data), 0, 0, 0
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def archive_bytes(root: Path, cache: Path | None = None) -> bytes:
    """A reproducible .tar.gz of `files(root)` under the folder PREFIX/.

    With `cache` (a folder), the archive of the last call is reused when no file's
    name, mode or bytes changed (`reuse.Cache`): reading and hashing the files is
    cheap, packing and compressing them is what takes the time.
    """
    members = _members(root)
    if cache is None:
        return _pack(members)
    key = _sha256("".join(f"{name}\0{mode}\0{_sha256(data)}\n"
                          for name, mode, data in members).encode())
    stored = reuse.Cache(cache)
    name, suffix = ARCHIVE.split(".", 1)
    if (hit := stored.load(name, suffix, key)) is not None:
        return hit[0]
    packed = _pack(members)
    stored.store(name, suffix, key, packed)
    return packed
