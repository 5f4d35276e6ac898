"""Small helpers the checks share: reading a JSON file and pointing at a line of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..hosts import is_loopback


def read_json(path: Path, what: str) -> Any:
    """The parsed file; a missing or corrupt one is a `UserError` naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} not found: is this {what}?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e})") from None


def line_of(path: Path, needle: str) -> int | None:
    """The 1-based line of the first occurrence of `needle` in a text file, if any."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    index = text.find(needle)
    return None if index < 0 else text.count("\n", 0, index) + 1


SKIPPED_DIRS = {"node_modules", "__pycache__", "site-packages", "dist", "build"}


def walk(root: Path) -> list[Path]:
    """Every file under `root`, sorted, skipping hidden folders (.git, .venv …),
    virtual environments and build outputs: what a repository's own code is."""
    if root.is_file():
        return [root]
    files = []
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or path.name in SKIPPED_DIRS:
            continue
        if path.is_dir():
            if not (path / "pyvenv.cfg").exists():
                files += walk(path)
        elif path.is_file():
            files.append(path)
    return files


LAUNCH_SUFFIXES = {".sh", ".bash", ".zsh", ".yml", ".yaml", ".toml", ".json",
                   ".service", ".slurm", ".sbatch", ".env", ".cfg", ".ini"}
LAUNCH_NAMES = {"Makefile", "Dockerfile", "Procfile", "Containerfile", "justfile"}


def launch_files(root: Path) -> list[Path]:
    """Files that start or configure programs: shell scripts, Makefiles, Dockerfiles,
    job files and YAML/TOML/JSON configs (not prose, not Python)."""
    return [p for p in walk(root) if p.suffix in LAUNCH_SUFFIXES
            or p.name in LAUNCH_NAMES or p.name.startswith("Dockerfile")]


def read_text(path: Path) -> str | None:
    """The file's text, or None for binary or unreadable files."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, line) with shell continuations (`\\` + newline) joined."""
    lines, pending, start = [], "", 1
    for number, line in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append((start, pending + line))
        pending = ""
    if pending:
        lines.append((start, pending))
    return lines


def exposed(host: str) -> bool:
    """True unless `host` (as written in a file: quotes, brackets) is loopback."""
    return not is_loopback(host.strip("[]'\""))
