"""Sources: the stdlib reader, local files, and pinned downloads from a local server."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import sysconfig
import threading
from pathlib import Path

import pytest

from llm_reference.errors import UserError
from llm_reference.sources import (
    STDLIB_LICENSE,
    UNKNOWN_LICENSE,
    download,
    local_files,
    open_sources,
    pydoc_topics,
    stdlib_files,
)

# --- a local HTTP server that understands Range -----------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    ranges: list[str | None] = []  # the Range header of every GET, in order
    ignore_range = False  # answer 200 with the whole body even when asked for a range
    cut_after: int | None = None  # announce the full length, send this many, hang up

    def do_GET(self):  # noqa: N802 (the http.server API)
        body = self.files.get(self.path)
        self.ranges.append(self.headers.get("Range"))
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and not self.ignore_range:
            start = int(match[1])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range",
                             f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        part = body[start:]
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if self.cut_after is not None:
            part = part[:self.cut_after]
            self.close_connection = True
        self.wfile.write(part)

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def server():
    """A fresh server on 127.0.0.1 with its own handler state; yields (base_url, H)."""
    handler = type("Handler", (_Handler,), {"files": {}, "ranges": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


BODY = b"".join(b"line %d of a corpus served over HTTP\n" % i for i in range(5000))
SHA = hashlib.sha256(BODY).hexdigest()


def test_download_fetches_verifies_and_caches(server, tmp_path):
    base, handler = server
    handler.files["/corpus.txt"] = BODY
    path = download(f"{base}/corpus.txt", SHA, tmp_path)
    assert path.read_bytes() == BODY
    assert path.name.endswith("corpus.txt") and SHA[:16] in path.name
    assert handler.ranges == [None]
    assert download(f"{base}/corpus.txt", SHA, tmp_path) == path  # cached
    assert handler.ranges == [None]  # no second request
    assert not list(tmp_path.glob("*.part"))


def test_download_resumes_a_partial_file_with_range(server, tmp_path):
    base, handler = server
    handler.files["/corpus.txt"] = BODY
    part = tmp_path / f"{SHA[:16]}-corpus.txt.part"
    part.write_bytes(BODY[:12345])
    path = download(f"{base}/corpus.txt", SHA, tmp_path)
    assert handler.ranges == ["bytes=12345-"]
    assert path.read_bytes() == BODY
    assert not part.exists()


def test_download_after_an_interrupted_transfer_resumes(server, tmp_path):
    base, handler = server
    handler.files["/corpus.txt"] = BODY
    handler.cut_after = 50_000
    with pytest.raises(UserError, match="run again to resume"):
        download(f"{base}/corpus.txt", SHA, tmp_path)
    part = tmp_path / f"{SHA[:16]}-corpus.txt.part"
    assert part.stat().st_size == 50_000
    assert not (tmp_path / f"{SHA[:16]}-corpus.txt").exists()
    handler.cut_after = None
    path = download(f"{base}/corpus.txt", SHA, tmp_path)
    assert handler.ranges == [None, "bytes=50000-"]
    assert path.read_bytes() == BODY


def test_download_starts_over_when_the_server_ignores_range(server, tmp_path):
    base, handler = server
    handler.files["/corpus.txt"] = BODY
    handler.ignore_range = True
    part = tmp_path / f"{SHA[:16]}-corpus.txt.part"
    part.write_bytes(b"stale bytes that must not stay in front")
    path = download(f"{base}/corpus.txt", SHA, tmp_path)
    assert path.read_bytes() == BODY


def test_download_with_complete_part_file_gets_416_and_finishes(server, tmp_path):
    base, handler = server
    handler.files["/corpus.txt"] = BODY
    (tmp_path / f"{SHA[:16]}-corpus.txt.part").write_bytes(BODY)
    assert download(f"{base}/corpus.txt", SHA, tmp_path).read_bytes() == BODY
    assert handler.ranges == [f"bytes={len(BODY)}-"]


def test_checksum_mismatch_names_url_expected_and_got(server, tmp_path):
    base, handler = server
    handler.files["/corpus.txt"] = BODY
    wrong = "0" * 64
    url = f"{base}/corpus.txt"
    with pytest.raises(UserError) as info:
        download(url, wrong, tmp_path)
    message = str(info.value)
    assert url in message and wrong in message and SHA in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []  # neither the file nor its .part is kept


def test_http_error_is_a_user_error(server, tmp_path):
    base, _ = server
    with pytest.raises(UserError, match="HTTP 404"):
        download(f"{base}/missing.txt", SHA, tmp_path)


def test_unreachable_server_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot download"):
        download("http://127.0.0.1:9/x.txt", SHA, tmp_path)  # port 9: discard


def test_url_source_reads_jsonl_documents(server, tmp_path):
    base, handler = server
    lines = [json.dumps({"text": f"document number {i}"}) for i in range(3)]
    body = ("\n".join(lines) + "\n").encode()
    handler.files["/docs.jsonl"] = body
    url = f"{base}/docs.jsonl"
    (source,) = open_sources([url], [hashlib.sha256(body).hexdigest().upper()],
                             ["CC0-1.0"], cache_dir=tmp_path)
    assert (source.kind, source.license) == ("url", "CC0-1.0")
    docs = list(source.documents())
    assert [d.text for d in docs] == [f"document number {i}" for i in range(3)]
    assert [d.path for d in docs] == ["docs.jsonl:1", "docs.jsonl:2", "docs.jsonl:3"]
    assert {d.source for d in docs} == {url}


# --- the stdlib -------------------------------------------------------------------


def test_stdlib_files_are_sorted_and_exclude_site_packages_and_tests():
    root, files = stdlib_files()
    assert root == Path(sysconfig.get_paths()["stdlib"])
    names = [f.relative_to(root).as_posix() for f in files]
    assert names == sorted(names)
    assert "os.py" in names and "asyncio/tasks.py" in names
    assert not any(n.startswith(("site-packages/", "test/")) for n in names)
    assert not any("/tests/" in n or "/idle_test/" in n for n in names)
    assert "pydoc_data/topics.py" not in names  # read as prose instead
    # generated codec tables are left out; the hand-written codecs stay
    assert "encodings/cp437.py" not in names and "encodings/idna.py" in names
    _, with_tests = stdlib_files(include_tests=True)
    assert len(with_tests) > len(files)
    assert any(f.relative_to(root).parts[0] == "test" for f in with_tests)


def test_stdlib_source_yields_python_files_then_pydoc_prose():
    (source,) = open_sources(["stdlib"])
    assert source.license == STDLIB_LICENSE == "PSF-2.0"
    docs = iter(source.documents())
    first = next(docs)
    assert (first.source, first.path) == ("stdlib", "__future__.py")
    assert "absolute_import" in first.text
    topics = list(pydoc_topics())
    assert len(topics) > 50
    assert all(d.path.startswith("pydoc_data/topics.py#") for d in topics)
    assert any("while" in d.text for d in topics)


# --- local files ------------------------------------------------------------------


def test_local_folder_skips_hidden_and_binary_files(tmp_path):
    (tmp_path / "b.txt").write_text("bee")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.md").write_text("ay")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("hidden")
    (tmp_path / "image.bin").write_bytes(b"\x89PNG\x00\xff\xfe")
    (source,) = open_sources([str(tmp_path)])
    docs = list(source.documents())
    assert [(d.path, d.text) for d in docs] == [("b.txt", "bee"), ("sub/a.md", "ay")]
    assert source.skipped == ["image.bin"]
    assert source.license == UNKNOWN_LICENSE


def test_local_glob_and_single_file(tmp_path):
    for name in ("x1.txt", "x2.txt", "y.txt"):
        (tmp_path / name).write_text(name)
    _, files = local_files(str(tmp_path / "x*.txt"))
    assert [f.name for f in files] == ["x1.txt", "x2.txt"]
    root, files = local_files(str(tmp_path / "y.txt"))
    assert root is None and [f.name for f in files] == ["y.txt"]


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "nope", "does not exist"),
    (lambda p: p / "*.none", "no files match"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "holds no files"),
])
def test_missing_or_empty_local_sources_are_user_errors(tmp_path, make, message):
    with pytest.raises(UserError, match=message):
        open_sources([str(make(tmp_path))])


def test_bad_jsonl_line_names_file_and_line(tmp_path):
    for bad in ('{"title": "no text"}', '{"text": 3}', "[1, 2]", "{oops",
                '{"text": "\xff"}'):
        (tmp_path / "d.jsonl").write_bytes(
            b'{"text": "ok \xe2\x80\xa8 still line 1"}\n' + bad.encode("latin-1"))
        (source,) = open_sources([str(tmp_path / "d.jsonl")])
        with pytest.raises(UserError, match=r"d.jsonl:2"):
            list(source.documents())


# --- specs, pins and licenses -----------------------------------------------------


def test_url_without_pin_or_with_bad_pin_is_refused(tmp_path):
    with pytest.raises(UserError, match="--sha256"):
        open_sources(["https://example.com/x.txt"], cache_dir=tmp_path)
    with pytest.raises(UserError, match="64 hexadecimal"):
        open_sources(["https://example.com/x.txt"], ["abc"], cache_dir=tmp_path)


def test_licenses_one_for_all_or_one_each(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).write_text(name)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    sources = open_sources(["stdlib", a, b], licenses=["MIT"])
    assert [s.license for s in sources] == ["PSF-2.0", "MIT", "MIT"]
    sources = open_sources([a, "stdlib", b], licenses=["MIT", "CC-BY-4.0"])
    assert [s.license for s in sources] == ["MIT", "PSF-2.0", "CC-BY-4.0"]
    with pytest.raises(UserError, match="--license"):
        open_sources([a, b], licenses=["MIT", "MIT", "MIT"])
    with pytest.raises(UserError, match="twice"):
        open_sources([a, a])


# --- compressed and columnar files ------------------------------------------------

TEXTS = ["first document\n", "second, with a \u2028 inside", "third " * 50]


def write_format(path: Path, texts: list[str], column: str = "text") -> Path:
    """Write `texts` as the file format `path`'s name asks for."""
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    lines = "".join(json.dumps({column: t, "id": n}) + "\n" for n, t in
                    enumerate(texts)).encode("utf-8")
    table = pa.table({"id": list(range(len(texts))), column: texts})
    if path.name.endswith(".jsonl.gz"):
        path.write_bytes(gzip.compress(lines))
    elif path.name.endswith(".jsonl.zst"):
        path.write_bytes(zstandard.ZstdCompressor().compress(lines))
    elif path.suffix == ".parquet":
        pq.write_table(table, path, row_group_size=2)
    elif path.name.endswith(".stream.arrow"):  # what `datasets` saves
        with pa.ipc.new_stream(str(path), table.schema) as writer:
            writer.write_table(table, max_chunksize=2)
    else:
        with pa.ipc.new_file(str(path), table.schema) as writer:
            writer.write_table(table, max_chunksize=2)
    return path


@pytest.mark.parametrize("name", ["d.jsonl.gz", "d.jsonl.zst", "d.parquet",
                                  "d.arrow", "d.stream.arrow"])
def test_compressed_and_columnar_files_stream_their_documents(tmp_path, name):
    write_format(tmp_path / name, TEXTS)
    (source,) = open_sources([str(tmp_path / name)])
    docs = list(source.documents())
    assert [d.text for d in docs] == TEXTS
    assert [d.path for d in docs] == [f"{tmp_path / name}:{i}" for i in (1, 2, 3)]


@pytest.mark.parametrize("name", ["d.jsonl.gz", "d.parquet", "d.arrow"])
def test_text_column_picks_another_field(tmp_path, name):
    write_format(tmp_path / name, TEXTS, column="content")
    (source,) = open_sources([str(tmp_path / name)], text_column="content")
    assert [d.text for d in source.documents()] == TEXTS
    (source,) = open_sources([str(tmp_path / name)])
    with pytest.raises(UserError, match="text"):
        list(source.documents())


@pytest.mark.parametrize("name", ["d.jsonl.gz", "d.jsonl.zst", "d.parquet",
                                  "d.arrow"])
def test_a_truncated_file_is_one_line_and_exit_2(tmp_path, name, capsys):
    from llm_reference.__main__ import main

    path = write_format(tmp_path / name, TEXTS * 20)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert main(["prepare", "--source", str(path), "--out",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "corrupt or truncated" in err and name in err


def test_a_table_without_the_column_is_one_line_and_exit_2(tmp_path, capsys):
    from llm_reference.__main__ import main

    path = write_format(tmp_path / "d.parquet", TEXTS, column="body")
    assert main(["prepare", "--source", str(path), "--out",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "no column 'text'" in err
    assert "body" in err and "--text-column" in err and "\n" not in err


def test_a_separator_cuts_a_text_file_into_documents(tmp_path):
    stories = [f"Once upon a time {i}." * (1 + i % 7) for i in range(50)]
    path = tmp_path / "stories.txt"
    path.write_text("<|endoftext|>".join(stories), encoding="utf-8")
    (source,) = open_sources([str(path)], separator="<|endoftext|>")
    docs = list(source.documents())
    assert [d.text for d in docs] == stories
    assert docs[1].path == f"{path}#2"
