"""The source archive and commit every edition of the book carries (source.py)."""

import gzip
import io
import subprocess
import tarfile

from bookbuilder import source


def _repo(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("print('a')\n")
    (tmp_path / "run.sh").write_text("echo hi\n")
    (tmp_path / "run.sh").chmod(0o755)
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "big.pdf").write_bytes(b"%PDF")
    return tmp_path


def _names(data):
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        return {m.name: (m.mode, m.mtime, tar.extractfile(m).read())
                for m in tar.getmembers()}


def test_archive_without_git_skips_build_folders(tmp_path):
    root = _repo(tmp_path)
    members = _names(source.archive_bytes(root))
    assert set(members) == {"llm-from-scratch/pkg/a.py", "llm-from-scratch/run.sh"}
    assert members["llm-from-scratch/run.sh"][:2] == (0o755, 0)
    assert members["llm-from-scratch/pkg/a.py"][2] == b"print('a')\n"
    assert source.revision(root) is None


def test_archive_is_deterministic_and_follows_git(tmp_path):
    root = _repo(tmp_path)
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "pkg"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=root, check=True)
    first = source.archive_bytes(root)
    assert first == source.archive_bytes(root)  # same tree, same bytes
    assert set(_names(first)) == {"llm-from-scratch/pkg/a.py"}  # tracked only
    rev = source.revision(root)
    assert len(rev["commit"]) == 40 and rev["dirty"] is False
    (root / "pkg" / "a.py").write_text("print('b')\n")
    assert source.revision(root)["dirty"] is True
    assert _names(source.archive_bytes(root))["llm-from-scratch/pkg/a.py"][2] == \
        b"print('b')\n"  # the working tree, as the book's experiments ran it


def test_archive_is_reused_until_a_file_changes(tmp_path):
    (tmp_path / "repo").mkdir()
    root, cache = _repo(tmp_path / "repo"), tmp_path / "cache"
    first = source.archive_bytes(root, cache)
    assert first == source.archive_bytes(root) == source.archive_bytes(root, cache)
    (cache / source.ARCHIVE).write_bytes(b"torn")  # a damaged cache is not used
    assert source.archive_bytes(root, cache) == first
    (root / "pkg" / "a.py").write_text("print('b')\n")
    changed = source.archive_bytes(root, cache)
    assert changed != first and changed == source.archive_bytes(root)
    assert _names(changed)["llm-from-scratch/pkg/a.py"][2] == b"print('b')\n"
    (root / "pkg" / "a.py").chmod(0o755)  # the mode is in the key too
    assert _names(source.archive_bytes(root, cache))["llm-from-scratch/pkg/a.py"][0] \
        == 0o755
