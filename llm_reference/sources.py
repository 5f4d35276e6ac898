"""Where training text comes from: the stdlib, local files, and pinned downloads.

Every source yields `Document`s: a text, the id of the source it came from and a path
inside that source. Three kinds of source share one pipeline:

- `stdlib` (the default, needs no network): the Python installation's own standard
  library, its `.py` files and the English prose of `pydoc_data.topics`, read at run
  time. License: PSF-2.0.
- a local file, folder or glob: its license is whatever the user declares.
- a URL pinned by sha256: downloaded once into a cache folder, resumed if interrupted,
  and refused if its checksum differs from the pin.

A plain file is one document; JSON Lines (`.jsonl`, `.jsonl.gz`, `.jsonl.zst`) and
tables (`.parquet`, `.arrow`) hold many, one per line or row, in a text field or column
(`"text"` unless told otherwise): `readers` streams them.
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import io
import os
import sys
import sysconfig
import tokenize
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Literal

from tqdm import tqdm

from . import hub, readers
from .errors import UserError

STDLIB_LICENSE = "PSF-2.0"
RECIPE_NAMES = ("stdlib", "tinyshakespeare", "tinystories", "fineweb-edu")  # recipes.py
UNKNOWN_LICENSE = "unknown"
# Folders of the stdlib that hold its test suites (left out unless asked for).
STDLIB_TEST_DIRS = {"test", "tests", "idle_test"}
# Third-party packages live inside the stdlib folder but are not part of it.
STDLIB_EXCLUDED_DIRS = {"site-packages", "dist-packages", "__pycache__"}
# Its topics are read as prose by `pydoc_topics`, not as one big Python literal.
STDLIB_EXCLUDED_FILES = {"pydoc_data/topics.py"}
# Machine-generated codec tables (encodings/cp437.py …) say so on their first line:
# 10% of the corpus, all hex literals, and a small model learns to babble them.
GENERATED_MARKER = b"gencodec.py"


@dataclass(frozen=True)
class Document:
    """One unit of text: the pipeline dedups, splits and separates documents."""

    text: str
    source: str  # the id of the Source it came from, e.g. "stdlib"
    path: str  # where inside the source, e.g. "asyncio/tasks.py"


@dataclass
class Source:
    """One input of `prepare`, with what the provenance manifest needs to know."""

    id: str  # "stdlib", a path or glob as the user wrote it, or a URL
    kind: Literal["stdlib", "local", "url", "hub"]
    license: str
    files: list[Path]  # the files to read, in a fixed order
    root: Path | None = None  # document paths are relative to this folder
    sha256: str | None = None  # the pin of a URL source
    skipped: list[str] = field(default_factory=list)  # files that are not text
    text_column: str = "text"  # the field or column of multi-document files
    fetch: Callable[[PurePosixPath], Path] | None = None  # hub: download one file
    separator: str | None = None  # splits plain text files into documents

    def documents(self) -> Iterator[Document]:
        """Yield this source's documents, always in the same order."""
        for path in self.files:
            yield from self._read(path)
        if self.kind == "stdlib":
            yield from pydoc_topics()

    def _read(self, path: Path) -> Iterator[Document]:
        name = path.relative_to(self.root).as_posix() if self.root else str(path)
        if self.kind == "url":
            name = Path(urllib.parse.urlparse(self.id).path).name or path.name
        if self.fetch is not None:
            path = self.fetch(path)  # only now, when the reader gets to it
        if readers.is_multi_document(path):
            for text, row in readers.read_documents(path, self.text_column):
                yield Document(text, self.id, f"{name}:{row}")
            return
        if self.separator is not None and self.kind != "stdlib":
            for text, number in readers.separated_documents(path, self.separator):
                yield Document(text, self.id, f"{name}#{number}")
            return
        raw = path.read_bytes()
        text = _decode_python(raw) if self.kind == "stdlib" else _decode_text(raw)
        if text is None:
            self.skipped.append(name)
        else:
            yield Document(text, self.id, name)


def _decode_text(raw: bytes) -> str | None:
    """UTF-8 text, or None for a file that is not text (undecodable, or has NULs)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


def _decode_python(raw: bytes) -> str | None:
    """Python source in the encoding it declares (PEP 263), or None if unreadable."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
        return raw.decode(encoding)
    except (SyntaxError, UnicodeDecodeError):
        return None


# --- the standard library ---------------------------------------------------------


def stdlib_files(include_tests: bool = False) -> tuple[Path, list[Path]]:
    """The stdlib folder and its `.py` files, sorted by path (so: deterministic)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = STDLIB_EXCLUDED_DIRS | (set() if include_tests else STDLIB_TEST_DIRS)
    files = {
        path.relative_to(root).as_posix(): path for path in root.rglob("*.py")
        if not skip.intersection(path.relative_to(root).parts[:-1])
    }
    names = sorted(files.keys() - STDLIB_EXCLUDED_FILES)
    return root, [files[n] for n in names if not is_generated(files[n])]


def is_generated(path: Path) -> bool:
    """True for a file that a tool wrote (its first line names the generator)."""
    with open(path, "rb") as f:
        return GENERATED_MARKER in f.readline()


def pydoc_topics() -> Iterator[Document]:
    """The language reference's prose that `help("topic")` shows, one doc per topic."""
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield Document(topics[name], "stdlib", f"pydoc_data/topics.py#{name}")


# --- local files ------------------------------------------------------------------


def local_files(spec: str) -> tuple[Path | None, list[Path]]:
    """Resolve a file, a folder (recursively, hidden entries skipped) or a glob."""
    path = Path(spec).expanduser()
    if path.is_file():
        return None, [path]
    if path.is_dir():
        files = [
            p for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".")
                                       for part in p.relative_to(path).parts)
        ]
        if not files:
            raise UserError(f"source folder {spec} holds no files; "
                            "point --source at a folder of text files")
        return path, sorted(files, key=lambda p: p.relative_to(path).as_posix())
    if glob.has_magic(spec):
        files = sorted(Path(p) for p in glob.glob(spec, recursive=True)
                       if Path(p).is_file())
        if not files:
            raise UserError(f"no files match the pattern {spec!r}; check --source")
        return None, files
    raise UserError(f"source {spec} does not exist; pass a recipe ("
                    f"{', '.join(RECIPE_NAMES)}), a file, a folder, a glob, an "
                    "https:// URL or hf:ORG/NAME to --source")


# --- downloads --------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Where downloads are kept: $XDG_CACHE_HOME/llm_reference (or ~/.cache/…)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llm_reference" / "downloads"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, sha256: str, cache_dir: Path) -> Path:
    """Fetch `url` into `cache_dir` and check it against its sha256 pin.

    The file is first written to `NAME.part`. If a `.part` is already there (an
    earlier download was interrupted), we ask the server for the rest only, with an
    HTTP `Range: bytes=N-` header; a server that answers 200 instead of 206 ignored
    the range, and we start over. Only a file whose checksum matches the pin is
    renamed to its final name, so the cache never holds a wrong file under a good name.
    """
    name = Path(urllib.parse.urlparse(url).path).name or "download"
    target = cache_dir / f"{sha256[:16]}-{name}"  # content-addressed: pin in the name
    if target.exists() and file_sha256(target) == sha256:
        return target
    part = target.with_name(target.name + ".part")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the download cache {cache_dir}: {e.strerror}; "
                        "pass a writable --cache-dir") from None
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=60) as response:
            if response.status != 206:  # a full answer: (re)start from byte 0
                offset = 0
            _save_stream(response, part, offset, url)
    except urllib.error.HTTPError as e:
        if not (e.code == 416 and offset):  # 416 after a full .part: nothing left
            raise UserError(f"cannot download {url}: HTTP {e.code} {e.reason}"
                            ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise UserError(f"cannot download {url}: {reason}; run again to resume "
                        "(the partial file is kept)") from None
    got = file_sha256(part)
    if got != sha256:
        part.unlink()
        raise UserError(f"checksum mismatch for {url}: expected sha256 {sha256}, "
                        f"got {got}; check the URL and the --sha256 pin")
    os.replace(part, target)
    return target


def _save_stream(response, part: Path, offset: int, url: str) -> None:
    """Append the response body to `part` (from `offset`) with a progress bar."""
    length = response.headers.get("Content-Length")
    total = offset + int(length) if length else None
    received = offset
    with open(part, "ab" if offset else "wb") as f, tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, desc=part.name,
        file=sys.stderr, disable=None, leave=False,
    ) as bar:
        while block := response.read(1 << 16):
            f.write(block)
            received += len(block)
            bar.update(len(block))
    if total is not None and received < total:  # the server hung up early
        raise UserError(f"download of {url} stopped after {received} of {total} bytes; "
                        "run again to resume (the partial file is kept)")


# --- from command-line specs to sources -------------------------------------------


def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def open_sources(
    specs: list[str],
    sha256s: list[str] | None = None,
    licenses: list[str] | None = None,
    include_tests: bool = False,
    cache_dir: Path | None = None,
    text_column: str = "text",
    revision: str | None = None,
    separator: str | None = None,
) -> list[Source]:
    """Turn `--source` values into `Source`s, downloading URLs first.

    `sha256s` pins the URLs, one per URL in the order given. `licenses` declares the
    licenses of the non-stdlib sources: one value for all of them, or one each, in
    order; undeclared means "unknown" (the manifest then carries a warning).
    `revision` pins the Hub datasets (`hf:…`); `separator` cuts plain text files
    into many documents. All checks run here, before anything
    is written, so a mistake costs nothing.
    """
    sha256s, licenses = sha256s or [], licenses or []
    urls = [s for s in specs if is_url(s)]
    others = [s for s in specs if s != "stdlib"]
    if len(sha256s) != len(urls):
        raise UserError(f"got {len(urls)} URL source(s) and {len(sha256s)} --sha256 "
                        "value(s); pin every URL with one --sha256, in the same order")
    if len(licenses) not in (0, 1, len(others)):
        raise UserError(f"got {len(licenses)} --license values for {len(others)} "
                        "non-stdlib source(s); give one for all, or one per source")
    if len(set(specs)) != len(specs):
        raise UserError("a --source is given twice; list each source once")
    if any(map(hub.is_hub, specs)) and not revision:
        raise UserError("a hf: source needs --revision: a commit hash or tag of the "
                        "dataset, so that the same command reads the same data")
    pins = dict(zip(urls, (_check_sha256(s) for s in sha256s)))
    declared = dict(zip(others, licenses * len(others) if len(licenses) == 1
                        else licenses))
    cache_dir = cache_dir or default_cache_dir()
    sources = []
    for spec in specs:
        license_ = declared.get(spec, UNKNOWN_LICENSE)
        if spec == "stdlib":
            root, files = stdlib_files(include_tests)
            sources.append(Source("stdlib", "stdlib", STDLIB_LICENSE, files, root))
        elif hub.is_hub(spec):
            repo, pattern = hub.parse(spec)
            files = hub.list_files(repo, revision, pattern)
            sources.append(Source(f"{spec}@{revision}", "hub", license_, files,
                                  text_column=text_column,
                                  fetch=hub.downloader(repo, revision),
                                  separator=separator))
        elif is_url(spec):
            path = download(spec, pins[spec], cache_dir)
            sources.append(Source(spec, "url", license_, [path], sha256=pins[spec],
                                  text_column=text_column,
                                  separator=separator))
        else:
            root, files = local_files(spec)
            sources.append(Source(spec, "local", license_, files, root,
                                  text_column=text_column,
                                  separator=separator))
    return sources


def _check_sha256(value: str) -> str:
    value = value.strip().lower()
    if len(value) != 64 or not all(c in "0123456789abcdef" for c in value):
        raise UserError(f"--sha256 {value!r} is not a sha256 checksum "
                        "(64 hexadecimal digits, as printed by `sha256sum FILE`)")
    return value
