"""release: checksums a downloader can verify.

Protocol: a module with three functions

    sha256_file(path) -> str
    files_sha256(folder) -> dict[str, str]
    verify(folder, files_sha256) -> list[str]

`sha256_file`: the SHA-256 of the file's bytes as 64 lowercase hex digits
(hashlib), read in blocks so that a 10 GB weights file never sits in memory.

`files_sha256`: {file name: sha256_file} for every regular file directly in the
folder except manifest.json (which holds these hashes: it cannot hold its own),
the names sorted; what `manifest.json` records as `files_sha256`.

`verify`: compare a release folder with the `files_sha256` its manifest records;
return the sorted names of the files that are listed but missing, differ from
their recorded hash, or are present but not listed (a pickle dropped in later),
manifest.json aside; [] means the release is what was signed off.

Reference: `llm_reference.sources.file_sha256`, the `files_sha256` of
`llm_reference.release.release_manifest`, and the `release.hashes-match` check of
`python -m llm_reference audit`.
Command: python -m llm_reference check release --impl my_release
Tolerance: exactly.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

from ..sources import file_sha256
from .runner import Node, expect_equal, fail


def reference_files_sha256(folder: Path) -> dict[str, str]:
    names = sorted(p.name for p in Path(folder).iterdir()
                   if p.is_file() and p.name != "manifest.json")
    return {name: file_sha256(Path(folder) / name) for name in names}


def reference_verify(folder: Path, files_sha256: dict[str, str]) -> list[str]:
    present = reference_files_sha256(folder)
    listed_bad = [n for n, h in files_sha256.items() if present.get(n) != h]
    unlisted = [n for n in present if n not in files_sha256]
    return sorted(listed_bad + unlisted)


node = Node(
    id="release",
    title="Model card, license, safetensors, manifest",
    protocol=__doc__,
    example="my_release",
    reference=lambda: SimpleNamespace(sha256_file=file_sha256,
                                      files_sha256=reference_files_sha256,
                                      verify=reference_verify),
    parts=("sha256_file", "files_sha256", "verify"),
)
FILES = {
    "model.safetensors": bytes(range(256)) * 4100,  # over a megabyte: read in blocks
    "config.json": b'{"n_layer": 2}\n',
    "README.md": "# A model card\n\nTrained on caf\u00e9 menus.\n".encode(),
    "empty.txt": b"",
}


def release_folder(root: Path) -> Path:
    folder = root / "release"
    folder.mkdir()
    for name, data in FILES.items():
        (folder / name).write_bytes(data)
    (folder / "manifest.json").write_text("{}", encoding="utf-8")
    (folder / "eval").mkdir()  # a folder is not a file: not listed
    return folder


@node.check("sha256_matches_reference", uses=["sha256_file"],
            section="The reproducibility manifest",
            hint="hashlib.sha256 over the file's bytes, .hexdigest()")
def sha256_matches_reference(sha256_file: Callable) -> None:
    with tempfile.TemporaryDirectory(prefix="check-release-") as tmp:
        folder = release_folder(Path(tmp))
        for name in FILES:
            expect_equal(sha256_file(folder / name), file_sha256(folder / name),
                         f"sha256_file({name})")


@node.check("manifest_lists_every_file", uses=["files_sha256"],
            section="The reproducibility manifest",
            hint="every regular file of the folder, by name, except manifest.json")
def manifest_lists_every_file(files_sha256: Callable) -> None:
    with tempfile.TemporaryDirectory(prefix="check-release-") as tmp:
        folder = release_folder(Path(tmp))
        ours = files_sha256(folder)
        if not isinstance(ours, dict):
            fail(f"files_sha256 returned a {type(ours).__name__}, expected a dict")
        expected = reference_files_sha256(folder)
        expect_equal(sorted(ours), sorted(expected), "the names listed")
        expect_equal(dict(ours), expected, "the hashes")


@node.check("verify_finds_every_change", uses=["verify"],
            section="Before you publish",
            hint="report listed files that are missing or changed, and files "
                 "present but not listed; sorted")
def verify_finds_every_change(verify: Callable) -> None:
    with tempfile.TemporaryDirectory(prefix="check-release-") as tmp:
        folder = release_folder(Path(tmp))
        recorded = reference_files_sha256(folder)
        expect_equal(list(verify(folder, dict(recorded))), [],
                     "verify of an untouched release")
        (folder / "config.json").write_bytes(b'{"n_layer": 3}\n')  # changed
        (folder / "README.md").unlink()  # missing
        (folder / "extra.pkl").write_bytes(b"\x80\x04")  # unlisted
        expect_equal(list(verify(folder, dict(recorded))),
                     reference_verify(folder, recorded),
                     "verify after changing, deleting and adding a file")
