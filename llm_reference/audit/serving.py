"""An inference server reachable from the network must require a key.

`serve` binds 127.0.0.1 by default; `--host 0.0.0.0` (or any non-loopback address)
lets every machine that can reach the port use the model, its compute and whatever it
memorised, unless an API key (`--api-key` or `LLM_API_KEY`) is required. The check
reads the files that launch or configure servers: shell scripts, Makefiles,
Dockerfiles, job files and YAML/TOML/JSON configs.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any, Iterator

from .files import exposed, launch_files, logical_lines, read_text
from .registry import Finding, Outcome, Targets, check

SERVE_COMMAND = re.compile(r"llm[_-]reference\s+serve\b")
KEY_SET = re.compile(r"\bLLM_API_KEY\s*[:=]\s*\S")  # an env entry that sets the key


def _host_of(command: str) -> str:
    """The --host value of a `serve` command line (default 127.0.0.1)."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        words = command.split()
    for i, word in enumerate(words):
        if word == "--host" and i + 1 < len(words):
            return words[i + 1]
        if word.startswith("--host="):
            return word.split("=", 1)[1]
    return "127.0.0.1"


def _server_tables(value: Any) -> Iterator[dict]:
    """Every table named `serve` or `server` in a parsed config."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in ("serve", "server") and isinstance(inner, dict):
                yield inner
            yield from _server_tables(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _server_tables(inner)


def _parsed(path: Path, text: str) -> Any:
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix == ".json":
            return json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError):
        pass
    return None


def server_findings(path: Path, text: str) -> list[Finding]:
    """Servers in one file that listen beyond loopback without a key."""
    findings = []
    key_in_env = bool(KEY_SET.search(text))
    for line, command in logical_lines(text):
        if SERVE_COMMAND.search(command) and "--api-key" not in command \
                and not key_in_env and exposed(host := _host_of(command)):
            findings.append(Finding(f"`serve --host {host}` without an API key",
                                    path, line))
    for table in _server_tables(_parsed(path, text)):
        host = str(table.get("host", "127.0.0.1"))
        if exposed(host) and not (table.get("api_key") or table.get("api-key")):
            findings.append(Finding(f"server config host {host!r} without api_key",
                                    path))
    return findings


@check("serving.bind-and-auth",
       verifies="no script or config starts `llm_reference serve` (or configures a "
                "[serve] table) on a non-loopback address without an API key",
       why="a server on 0.0.0.0 without a key lets anyone who reaches the port use "
           "the model and its compute, and probe what it memorised",
       fix="keep --host 127.0.0.1 behind a reverse proxy, or set LLM_API_KEY (or "
           "--api-key / api_key) from a secret store",
       targets=(("code",),))
def bind_and_auth(targets: Targets, on: str) -> Outcome:
    files = launch_files(targets.code)
    findings = [f for p in files if (text := read_text(p)) is not None
                for f in server_findings(p, text)]
    return Outcome(f"{len(files)} launch/config file(s) read", findings)
