"""Datasets on the Hugging Face Hub, at a pinned revision, fetched file by file.

`--source hf:ORG/NAME[:GLOB]` names a dataset repository and, optionally, which of
its files to read (`sample/10BT/*.parquet`; default: every .parquet, .jsonl(.gz/.zst)
and .arrow file). `--revision` pins a commit: the same command then reads the same
bytes next year, and the manifest records it. Files are listed once, in sorted
order, and each is downloaded only when the reader reaches it, so `--tokens 50M`
fetches the first few files of a corpus of thousands.

`huggingface_hub` does the HTTP, the cache (~/.cache/huggingface/hub) and the token
(the HF_TOKEN environment variable, for gated datasets). With HF_HUB_OFFLINE=1 it
reads only the cache: that is how the tests run it, on a cache folder they write.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path, PurePosixPath
from typing import Callable

from . import readers
from .errors import UserError

PREFIX = "hf:"


def is_hub(spec: str) -> bool:
    return spec.startswith(PREFIX)


def parse(spec: str) -> tuple[str, str | None]:
    """'hf:ORG/NAME:GLOB' -> ('ORG/NAME', 'GLOB'); the glob is optional."""
    repo, _, pattern = spec[len(PREFIX):].partition(":")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise UserError(f"--source {spec!r}: write a Hub dataset as "
                        "hf:ORG/NAME or hf:ORG/NAME:GLOB (e.g. "
                        "hf:HuggingFaceFW/fineweb-edu:sample/10BT/*.parquet)")
    return repo, pattern or None


def list_files(repo: str, revision: str, pattern: str | None) -> list[PurePosixPath]:
    """The dataset's files at `revision` that match `pattern`, sorted."""
    import huggingface_hub
    from huggingface_hub import constants

    try:
        if constants.HF_HUB_OFFLINE:  # no API: list the cached snapshot instead
            root = Path(huggingface_hub.snapshot_download(
                repo, repo_type="dataset", revision=revision, local_files_only=True))
            names = [p.relative_to(root).as_posix() for p in root.rglob("*")
                     if p.is_file()]
        else:
            names = huggingface_hub.HfApi().list_repo_files(
                repo, repo_type="dataset", revision=revision)
    except Exception as e:  # noqa: BLE001 (the hub's errors have no common base)
        raise _user_error(repo, revision, e) from None
    chosen = sorted(PurePosixPath(n) for n in names
                    if (fnmatch.fnmatch(n, pattern) if pattern
                        else readers.is_multi_document(PurePosixPath(n))))
    if not chosen:
        raise UserError(f"hf:{repo} at revision {revision} has no files matching "
                        f"{pattern or 'a .parquet, .jsonl or .arrow name'}; check "
                        "the GLOB after the dataset name")
    return chosen


def downloader(repo: str, revision: str) -> Callable[[PurePosixPath], Path]:
    """A function that fetches one file of the dataset (or finds it in the cache)."""
    import huggingface_hub

    def fetch(name: PurePosixPath) -> Path:
        try:
            return Path(huggingface_hub.hf_hub_download(
                repo, name.as_posix(), repo_type="dataset", revision=revision))
        except Exception as e:  # noqa: BLE001
            raise _user_error(repo, revision, e) from None

    return fetch


def _user_error(repo: str, revision: str, error: Exception) -> UserError:
    kind = type(error).__name__
    if "Revision" in kind:
        return UserError(f"hf:{repo} has no revision {revision!r}; pass a commit "
                         "hash or tag of the dataset to --revision")
    if "Repository" in kind or "Gated" in kind:
        return UserError(f"hf:{repo} was not found or needs access; check the name, "
                         "or set HF_TOKEN for a gated dataset")
    reason = str(error).splitlines()[0] if str(error) else kind
    return UserError(f"cannot read hf:{repo} at revision {revision}: {reason}")
