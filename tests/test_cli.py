"""The command line as a whole: every command's `--help`, quickly, and `--device`
checked before a command does any work."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from llm_reference.__main__ import COMMANDS, build_parser, main

# the commands that take --device, and what else each one requires
DEVICE_COMMANDS = {
    "eval": ["--run", "RUN"],
    "generate": ["--run", "RUN"],
    "finetune": ["--run", "RUN", "--out", "OUT"],
    "quantize": ["--run", "RUN", "--out", "OUT"],
    "rl": ["--run", "RUN", "--out", "OUT"],
    "serve": ["--run", "RUN"],
    "release": ["--run", "RUN", "--out", "OUT"],
}


def help_text(command: str) -> str:
    parser = build_parser(command)
    return next(a for a in parser._actions if a.dest == "command"
                ).choices[command].format_help()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m llm_reference {command}")
    assert COMMANDS[command][1] in out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_does_not_load_torch(command):
    code = ("import sys\n"
            "from llm_reference.__main__ import build_parser\n"
            f"build_parser({command!r})\n"
            "print([m for m in ('torch', 'fastapi') if m in sys.modules])\n")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, check=True).stdout
    assert loaded == "[]\n"


def test_device_table_lists_every_command_with_device():
    assert {c for c in COMMANDS if "--device" in help_text(c)} == set(DEVICE_COMMANDS)
    for command in DEVICE_COMMANDS:
        assert "(default: auto)" in help_text(command)


MISSING = [f"cuda:{torch.cuda.device_count()}"]  # one past the last GPU, or cuda:0
MISSING += [] if torch.cuda.is_available() else ["cuda"]
MISSING += [] if torch.backends.mps.is_available() else ["mps"]


@pytest.mark.parametrize("device", ["tpu", "cuda:x", *MISSING])
@pytest.mark.parametrize("command", sorted(DEVICE_COMMANDS))
def test_a_device_that_is_unknown_or_missing_is_a_one_line_error(
        command, device, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # RUN does not exist: the device is checked first
    assert main([command, *DEVICE_COMMANDS[command], "--device", device]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: device ") and err.count("\n") == 1
    assert device in err
    assert list(tmp_path.iterdir()) == []  # nothing written
