"""Your release checksums, for the `release` checkpoint.

Fill in each function, then run from this folder:

    python -m llm_reference check release --impl my_release

(`python -m llm_reference check --list release` prints the full protocol.)
"""

from __future__ import annotations

from pathlib import Path


def sha256_file(path: Path) -> str:
    """The file's SHA-256 as 64 lowercase hex digits, read in blocks."""
    raise NotImplementedError("sha256_file")


def files_sha256(folder: Path) -> dict[str, str]:
    """{name: sha256} of every regular file in the folder but manifest.json."""
    raise NotImplementedError("files_sha256")


def verify(folder: Path, files_sha256: dict[str, str]) -> list[str]:
    """Sorted names of files listed but missing or changed, or present but not
    listed (manifest.json aside); [] if the release is intact."""
    raise NotImplementedError("verify")
