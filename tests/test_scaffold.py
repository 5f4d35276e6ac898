"""The starter-repo exporter: every track and budget preset generates, each track's
repo passes its own tests on a CPU, its code is the reference's, bad input fails in
one line and leaves nothing, and regenerating gives the same files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

import scaffold
from llm_reference import plan
from llm_reference.errors import UserError
from scaffold import exercises, generate, modules, roadmap
from scaffold.cli import main

REPO = Path(__file__).resolve().parents[1]
PRESETS = [(t.name, budget) for t in plan.TRACKS.values() for budget in t.budgets]
HAS_GIT = shutil.which("git") is not None


def files(root: Path) -> dict[str, bytes]:
    """Every file of a generated repo (Git's own left out) and its bytes."""
    return {path: (root / path).read_bytes() for path in generate.tree(root)}


def run_scaffold(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "scaffold", *args], cwd=cwd,
                          input=stdin, capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> dict[str, Path]:
    """One repo per track, at the track's first budget preset, without Git."""
    root = tmp_path_factory.mktemp("repos")
    return {track: scaffold.new(track, output=root / track, name=f"{track} llm",
                                git=False)
            for track in plan.TRACKS}


# --- what a repo holds ----------------------------------------------------------


@pytest.mark.parametrize("track,budget", PRESETS)
def test_every_track_and_budget_preset_generates(tmp_path, track, budget):
    out = scaffold.new(track, budget, tmp_path / "repo", name="My LLM", git=False)
    planned = plan.make_plan(budget, track)
    assert (out / "config.toml").read_text() == modules.rename(planned.to_toml(),
                                                               "my_llm")
    answers = json.loads((out / ".scaffold.json").read_text())
    assert (answers["track"], answers["budget"], answers["name"]) == (
        track, budget, "My LLM")
    readme = (out / "README.md").read_text()
    for fact in (budget, plan.fmt_count(planned.params), "make test", "make train",
                 dict(planned.summary())["expected loss"], "## Your own text",
                 f"tokens of **{planned.data.recipe}**", "make data"):
        assert fact in readme
    makefile = (out / "Makefile").read_text()
    assert "TORCH       ?= torch==2.13.0" in makefile
    for target in ("venv", "test", "data", "prepare-own", "train", "generate",
                   "eval", "export", "check"):
        assert f"\n{target}:" in makefile
    # make data prepares what the plan names; the stdlib elsewhere is a smoke test
    assert f"PLAN_DATA := {planned.train['data_dir']}" in makefile
    prepare = planned.data.command.split("python -m llm_reference ")[1]
    assert prepare.replace("COMMIT", "$(REVISION)") in makefile
    assert ("\ndata-smoke:" in makefile) == (planned.data.recipe != "stdlib")
    assert ("SMOKE TEST ONLY" in makefile) == (planned.data.recipe != "stdlib")
    assert "run: make test" in (out / ".github/workflows/ci.yml").read_text()
    project = tomllib.loads((out / "pyproject.toml").read_text())
    assert project["project"]["name"] == "my-llm"
    assert project["tool"]["setuptools"]["packages"] == [
        "my_llm", "my_llm.audit", "my_llm.check", "my_llm.cli"]
    assert "transformers" not in str(project["project"]["dependencies"])
    assert project["project"]["optional-dependencies"]["export"] == [
        "transformers>=4.44"]
    assert (out / "LICENSE").read_text().startswith("MIT License")
    assert "data/" in (out / ".gitignore").read_text()
    assert f"({track} track)" in (out / "COMPLIANCE.md").read_text()
    assert "## Intended use" in (out / "MODEL_CARD.md").read_text()
    assert "{{" not in readme + makefile  # every template variable was rendered


def test_package_is_the_import_closure_of_the_track(repos):
    for track, out in repos.items():
        layout = generate.Layout.of(track)
        package = out / f"{track}_llm"
        copied = sorted(p.relative_to(package).with_suffix("").as_posix()
                        for p in package.rglob("*.py"))
        assert copied == sorted([*layout.ours, "__main__"])
        assert {"model", "tokenizer", "data", "train", "generate", "checkpoint",
                "evaluate", "plan", "cli/common", "cli/train", "cli/generate",
                "cli/check", "cli/export", "check/attention"} <= set(copied)
        # the book's estimate cards stay with the book
        assert not any("node_estimate" in p.read_text() or "ESTIMATE" in
                       p.read_text() for p in package.rglob("*.py"))
        assert sorted(p.name for p in (package / "presets").iterdir()) == sorted(
            p.name for p in (modules.REFERENCE / "presets").glob("*.toml"))


def test_track_specific_parts_only_where_the_track_has_them(repos):
    for track, out in repos.items():
        features = generate.Layout.of(track).features
        nodes = roadmap.track(track).nodes
        package = out / f"{track}_llm"
        for node, paths in generate.NODE_FILES.items():
            assert all((out / p).exists() == (node in features) for p in paths), node
        for node, names in modules.NODE_MODULES.items():
            if node in features:
                assert all((package / f"{m}.py").is_file()
                           for m in names), node
        has_serving = "serving" in nodes and modules.exists("serve")
        assert (package / "serve.py").is_file() == has_serving
        assert ("\nserve:" in (out / "Makefile").read_text()) == has_serving
        assert (package / "cli" / "serve.py").is_file() == has_serving
        assert ('"serve": ("cli.serve"' in (package / "__main__.py").read_text()
                ) == has_serving
    assert not (repos["beginner"] / "beginner_llm" / "quantize.py").exists()
    assert not (repos["beginner"] / "beginner_llm" / "cli" / "quantize.py").exists()
    assert (repos["researcher"] / "tests" / "test_finetune.py").is_file()


def dry_run(script: Path, *args: str) -> list[str]:
    """The command line a launch script prints with DRY_RUN=1."""
    result = subprocess.run([str(script), *args], env={**os.environ, "DRY_RUN": "1"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_several_gpus_train_with_torchrun_and_slurm(tmp_path):
    out = scaffold.new("researcher", "8xH100:24h", tmp_path / "repo", git=False)
    data = plan.make_plan("8xH100:24h", "researcher").data.out
    scripts = [out / "scripts" / "launch_torchrun.sh", out / "scripts" / "slurm.sbatch"]
    for script in scripts:
        assert os.access(script, os.X_OK)
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    launch, slurm = scripts
    assert 'NPROC="${NPROC:-8}"' in launch.read_text()
    (out / data).mkdir(parents=True)
    (out / data / "meta.json").write_text("{}")
    assert dry_run(launch) == [
        ".venv/bin/torchrun", "--standalone", "--nproc_per_node", "8", "-m", "repo",
        "train", "--config", "config.toml", "--data", data, "--out", "runs/main"]
    # resume on as many GPUs as the run trained on, from the run folder alone
    assert dry_run(launch, "--resume")[-4:] == ["train", "--resume", "--out",
                                                "runs/main"]
    makefile = (out / "Makefile").read_text()
    assert "scripts/launch_torchrun.sh --resume" in makefile
    # make train runs the planned layout
    assert "\tDATA=$(DATA) RUN=$(RUN) scripts/launch_torchrun.sh $(TRACKING)" in (
        makefile)
    assert "## Several GPUs" in (out / "README.md").read_text()
    text = slurm.read_text()
    for line in ("#SBATCH --nodes=1", "#SBATCH --gpus-per-node=8", "#SBATCH --requeue",
                 "#SBATCH --signal=B:TERM@300", "#SBATCH --time=1-00:00:00"):
        assert line in text.splitlines()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert dry_run(slurm) == [
        "srun", "--kill-on-bad-exit=1", ".venv/bin/torchrun", "--nnodes", "1",
        "--nproc_per_node", "8", "--rdzv_backend", "c10d", "--rdzv_endpoint",
        "localhost:29500", "--rdzv_id", "dry-run", "-m", "repo", "train", "--config",
        "config.toml", "--data", data, "--out", "runs/main"]
    # a requeued job finds the checkpoints and resumes
    (out / "runs" / "main" / "checkpoints" / "step_0000010").mkdir(parents=True)
    assert dry_run(slurm)[-4:] == ["train", "--resume", "--out", "runs/main"]
    beginner = scaffold.new("beginner", None, tmp_path / "small", git=False)
    assert not (beginner / "scripts" / "slurm.sbatch").exists()
    assert "torchrun" not in (beginner / "Makefile").read_text()


def test_a_budget_beyond_one_node_spans_nodes_in_slurm(tmp_path):
    out = scaffold.new("researcher", "16xH100:24h", tmp_path / "big", git=False)
    words = dry_run(out / "scripts" / "slurm.sbatch")
    assert words[words.index("--nnodes") + 1] == "2"
    assert words[words.index("--nproc_per_node") + 1] == "8"
    assert "#SBATCH --nodes=2" in (out / "scripts" / "slurm.sbatch").read_text()


def test_a_plan_that_shards_trains_with_fsdp_under_torchrun(tmp_path):
    assert plan.make_plan("8xH100:168h", "researcher").parallelism == "fsdp"
    out = scaffold.new("researcher", "8xH100:168h", tmp_path / "big", git=False)
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["train"]["parallel"] == "fsdp"  # what train reads under torchrun
    assert "torchrun, 8 GPUs (fsdp)" in (out / "Makefile").read_text()
    readme = (out / "README.md").read_text()
    assert "`make train` runs `scripts/launch_torchrun.sh`" in readme
    assert "the model states are sharded across GPUs" in readme
    assert "#SBATCH --time=7-00:00:00" in (out / "scripts" / "slurm.sbatch"
                                           ).read_text()


def test_beginner_config_checkpoints_within_ten_minutes(repos):
    planned = plan.make_plan(plan.TRACKS["beginner"].budgets[0], "beginner")
    step_seconds = planned.seconds / planned.train["max_steps"]
    config = tomllib.loads((repos["beginner"] / "config.toml").read_text())
    interval = config["train"]["checkpoint_interval"]
    assert interval < config["train"]["max_steps"]
    assert interval * step_seconds <= 300  # leaves time for `make data`


@pytest.mark.parametrize("track", list(plan.TRACKS))
def test_copied_code_equals_the_reference(repos, track):
    out, package = repos[track], f"{track}_llm"
    for path in sorted(p for p in (out / package).rglob("*")
                       if p.is_file() and "__pycache__" not in p.parts):
        relative = path.relative_to(out / package).as_posix()
        reference = modules.REFERENCE / relative
        if path.suffix != ".py":
            assert path.read_bytes() == reference.read_bytes(), relative
            continue
        header = modules.header(relative)
        text = path.read_text()
        assert text.startswith(header), relative
        body = text[len(header):].replace(package, modules.REFERENCE_NAME)
        if relative == "check/__init__.py":  # the track's node checks only
            assert text == modules.render_check_init(
                package, generate.Layout.of(track).ours)
            continue
        if relative != "__main__.py":
            assert body == reference.read_text(), relative
            continue
        # the dispatcher lost exactly the lines of the commands not copied
        kept, original = body.splitlines(), reference.read_text().splitlines()
        dropped = [line for line in original if line not in kept]
        assert all(line.lstrip().startswith('"') and "(" in line for line in dropped)
        assert [line for line in original if line in kept] == kept


def test_generated_command_line_lists_only_copied_commands(repos):
    out = repos["beginner"]
    env = {**os.environ, "PYTHONPATH": str(out)}
    result = subprocess.run([sys.executable, "-m", "beginner_llm", "--help"], cwd=out,
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines()
              if line.startswith("    ") and line.split()}
    assert {"prepare", "train", "eval", "generate", "plan", "check", "export"
            } <= listed
    assert not {"serve", "quantize"} & listed
    assert "python -m beginner_llm" in result.stdout


def test_generated_repo_audits_itself_in_ci(repos):
    """Every starter repo carries `audit` and its CI runs it (`make audit`)."""
    out = repos["beginner"]
    assert "make audit" in (out / ".github" / "workflows" / "ci.yml").read_text()
    assert "\naudit: venv" in (out / "Makefile").read_text()
    env = {**os.environ, "PYTHONPATH": str(out)}
    result = subprocess.run([sys.executable, "-m", "beginner_llm", "audit", "--code",
                             ".", "--format", "json"], cwd=out, capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    checked = {r["check"] for r in json.loads(result.stdout)["results"]
               if r["status"] == "pass"}
    assert {"model.no-pickle", "serving.bind-and-auth"} <= checked


@pytest.mark.slow
@pytest.mark.parametrize("track", list(plan.TRACKS))
def test_generated_repo_passes_its_own_tests_on_a_cpu(repos, track):
    """The repo's suite (tokenizer round trip, training steps, resume, config, and
    fine-tuning or serving where the track has them) with this venv's python."""
    out = repos[track]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(PYTHONPATH=str(out), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p",
                             "no:cacheprovider"], cwd=out, capture_output=True,
                            text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_test_passes_in_a_fresh_venv(tmp_path):
    """What a new user runs first: `make test` creates .venv from the package index
    (torch first, then the repo with its dev extra) and passes on a CPU."""
    out = scaffold.new("beginner", None, tmp_path / "fresh", git=False)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST", "PYTHONPATH", "VIRTUAL_ENV"))}
    result = subprocess.run(["make", "test", f"PYTHON={sys.executable}"], cwd=out,
                            capture_output=True, text=True, env=env, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
    assert (out / ".venv" / ".installed").is_file()


# --- regenerating ----------------------------------------------------------------


def test_replaying_the_answers_gives_the_same_files(tmp_path):
    first = scaffold.new("practitioner", "1xA100:24h", tmp_path / "first",
                         name="Same Name", torch_version="2.5.1")
    assert main(["new", "--replay", str(first / ".scaffold.json"), "-o",
                 str(tmp_path / "second"), "--no-git"]) == 0
    assert files(first) == files(tmp_path / "second")
    assert "torch==2.5.1" in (first / "Makefile").read_text()


def test_update_shows_the_diff_and_applies_only_when_asked(tmp_path, capsys):
    out = scaffold.new("beginner", "cpu:4h", tmp_path / "repo", git=False)
    fresh = files(out)
    assert main(["update", str(out)]) == 0
    assert "up to date" in capsys.readouterr().out
    (out / "README.md").write_text("my notes\n")
    (out / "tests" / "test_train.py").unlink()
    (out / "notes.txt").write_text("mine\n")
    assert main(["update", str(out)]) == 1
    shown = capsys.readouterr().out
    assert "--- a/README.md\n+++ b/README.md\n" in shown and "-my notes" in shown
    assert "+++ b/tests/test_train.py" in shown and "--apply" in shown
    assert (out / "README.md").read_text() == "my notes\n"  # nothing written
    assert main(["update", str(out), "--apply"]) == 0
    assert {**fresh, "notes.txt": b"mine\n"} == files(out)


@pytest.mark.skipif(not HAS_GIT, reason="git is not installed")
def test_first_commit_with_a_stand_in_identity(tmp_path, monkeypatch):
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                 "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    out = scaffold.new("beginner", "cpu:30m", tmp_path / "repo")

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=out, capture_output=True, text=True,
                              check=True).stdout.strip()

    assert git("log", "--format=%an|%s") == (
        "LLM From Scratch scaffold|Starter repo: beginner track, budget cpu:30m "
        "(python -m scaffold)")
    assert git("status", "--porcelain") == ""  # every file is committed
    assert git("branch", "--show-current") == "main"
    local = subprocess.run(["git", "config", "--local", "user.name"], cwd=out)
    assert local.returncode == 1  # the stand-in was for that commit only
    assert sorted(git("ls-files").splitlines()) == generate.tree(out)


# --- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize("args,message", [
    (["--track", "expert"], "unknown track 'expert'; choose one of beginner, "
                            "practitioner, researcher"),
    (["--budget", "1xH100"], "budget '1xH100'"),
    (["--budget", "2xQ100:8h"], "unknown hardware 'Q100'"),
    (["--track", "beginner", "--budget", "8xH100:24h"], "trains on one device"),
    (["--budget", "cpu:1s"], "buys only"),
    (["--name", "123"], "--name '123'"),
    (["--name", "torch"], "already a Python module"),
    (["--name", "json"], "already a Python module"),
    (["--name", "my {{ llm }}"], "--name"),
    (["--torch-version", "latest"], "--torch-version 'latest'"),
    (["--replay", "missing.json"], "missing.json: cannot read the answers"),
    (["--replay", "x.json", "--track", "beginner"], "drop --track"),
])
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys,
                                                  args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["new", "--no-input", "-o", "out/deeper", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_unless_forced(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    (tmp_path / "a-file").write_text("")
    assert main(["new", "--no-input", "-o", "taken"]) == 2
    assert "not empty; choose another one or pass --force" in capsys.readouterr().err
    assert main(["new", "--no-input", "-o", "a-file"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "taken"]
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["mine.txt"]
    monkeypatch.chdir(tmp_path / "taken")
    assert main(["new", "--no-input", "-o", ".", "--force"]) == 2
    assert "refusing to replace" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_GIT, reason="git is not installed")
def test_make_starter_command_creates_then_replaces(tmp_path):
    args = ["new", "--track", "beginner", "--budget", "cpu:30m", "-o", "my-llm",
            "--no-input", "--force"]
    first = run_scaffold(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "make test" in first.stdout
    (tmp_path / "my-llm" / "stray.txt").write_text("old")
    # --force never deletes work that Git does not hold
    refused = run_scaffold(*args, cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr == ("error: -o my-llm: a Git repository with uncommitted "
                              "work; commit or stash it, or choose another folder "
                              "(--force never deletes unsaved work)\n")
    assert (tmp_path / "my-llm" / "stray.txt").is_file()
    git = ["git", "-C", str(tmp_path / "my-llm"), "-c", "user.name=t", "-c",
           "user.email=t@localhost", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "mine"], check=True)
    second = run_scaffold(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert not (tmp_path / "my-llm" / "stray.txt").exists()
    assert (tmp_path / "my-llm" / "my_llm" / "train.py").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-llm"]  # no staging left


def test_errors_from_the_command_line_have_no_traceback(tmp_path):
    result = run_scaffold("new", "--track", "expert", "--no-input", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == ("error: unknown track 'expert'; choose one of beginner, "
                             "practitioner, researcher\n")


def test_without_options_it_asks(tmp_path):
    # track 2 (practitioner), budget 3 (its third preset), name, output folder
    result = run_scaffold("new", "--no-git", cwd=tmp_path,
                          stdin="2\n3\nMy Model\nasked\n")
    assert result.returncode == 0, result.stderr
    assert "Which track?" in result.stdout and "1xH100:8h" in result.stdout
    answers = json.loads((tmp_path / "asked" / ".scaffold.json").read_text())
    assert (answers["track"], answers["budget"], answers["name"]) == (
        "practitioner", plan.TRACKS["practitioner"].budgets[2], "My Model")
    assert (tmp_path / "asked" / "my_model" / "serve.py").is_file()


def test_plain_cookiecutter_is_stopped_by_the_pre_generation_hook(tmp_path):
    config = {"replay_dir": str(tmp_path / "replay"),
              "cookiecutters_dir": str(tmp_path / "cc")}
    with generate._temporary_files_in(tmp_path), pytest.raises(FailedHookException):
        cookiecutter(str(generate.TEMPLATE), no_input=True,
                     output_dir=str(tmp_path / "out"), default_config=config)
    assert list((tmp_path / "out").iterdir()) == []


# --- for the book -----------------------------------------------------------------


def test_describe_lists_what_new_writes(tmp_path):
    described = scaffold.describe("beginner", "cpu:30m")
    out = scaffold.new("beginner", "cpu:30m", tmp_path / "my-llm", git=False)
    assert described["files"] == generate.tree(out)
    assert described["plan"]["model"] == dict(
        plan.make_plan("cpu:30m", "beginner").summary())["model"]
    assert described["commands"] == ["make test", "make data", "make train"]


# --- following imports --------------------------------------------------------------


def test_closure_follows_lazy_imports_and_skips_type_checking(tmp_path, monkeypatch):
    package = {
        "__init__.py": "",
        "a.py": "from __future__ import annotations\n"
                "from typing import TYPE_CHECKING\n"
                "from .b import x\n"
                "if TYPE_CHECKING:\n    from .c import y\n    import heavy\n"
                "def f():\n    from . import d\n    import numpy.linalg\n",
        "b.py": "import llm_reference.e\nx = 1\n",
        "c.py": "y = 1\n", "d.py": 'PATH = "settings.json"\n',
        "e.py": "import json\nimport regex\n", "settings.json": "{}",
        "unused.json": "{}",
    }
    for name, text in package.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(modules, "REFERENCE", tmp_path)
    assert modules.closure(["a"]) == ["__init__", "a", "b", "d", "e"]
    assert modules.third_party(modules.closure(["a"])) == {"numpy", "regex"}
    assert modules.data_files(modules.closure(["a"])) == ["settings.json"]


def test_closure_brings_the_commands_its_modules_complete(tmp_path, monkeypatch):
    package = {
        "__init__.py": "", "errors.py": "", "serve.py": "",
        "model.py": "from .errors import UserError\n",
        "__main__.py": 'COMMANDS = {\n    "train": ("cli.train", "train"),\n'
                       '    "serve": ("cli.serve", "serve"),\n'
                       '    "plan": ("cli.plan", "plan"),\n}\n',
        "cli/__init__.py": "",
        "cli/common.py": "from ..errors import UserError\n",
        "cli/train.py": "from .common import x\ndef run():\n    from .. import model\n",
        "cli/serve.py": "from . import common\nfrom ..serve import app\n",
    }
    for name, text in package.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(modules, "REFERENCE", tmp_path)
    assert modules.commands()["serve"] == "cli/serve"
    assert modules.imports("cli/train")[0] == {"cli/common", "model"}
    assert modules.closure(["model"]) == [  # serve.py is not in: no serve command
        "__init__", "cli/__init__", "cli/common", "cli/train", "errors", "model"]
    assert "cli/serve" in modules.closure(["model", "serve"])
    main = modules.render_main("mine", modules.closure(["model"]))
    assert '"train": ("cli.train"' in main and '"serve"' not in main
    assert '"plan"' not in main  # its module does not exist


def test_the_book_says_which_steps_a_track_includes():
    nodes = roadmap.all_nodes()
    assert nodes[0] == "mental-model" and len(nodes) == 22
    beginner = roadmap.track("beginner")
    assert beginner.who and beginner.nodes["tokenizer"] == "core"
    assert beginner.nodes["scaling"] == "optional" and "distributed" not in (
        beginner.nodes)
    assert list(roadmap.track("researcher").nodes) == nodes  # in roadmap order
    with pytest.raises(UserError, match="unknown track 'expert'"):
        roadmap.track("expert")


def test_rename_changes_the_package_word_only():
    text = ("from llm_reference.model import GPT  # python -m llm_reference train\n"
            'FORMAT = "llm-reference-data/1"; other = "my_llm_reference_x"\n')
    assert modules.rename(text, "my_llm") == (
        "from my_llm.model import GPT  # python -m my_llm train\n"
        'FORMAT = "llm-reference-data/1"; other = "my_llm_reference_x"\n')


def test_requirements_take_our_version_bounds():
    assert modules.requirements(["numpy", "fastapi", "pydantic"]) == [
        "fastapi>=0.110", "numpy>=1.26", "pydantic"]


# --- exercises mode ---------------------------------------------------------------


@pytest.fixture(scope="module")
def exercises_repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("exercises")
    return scaffold.new("beginner", "cpu:30m", root / "ex", name="ex", git=False,
                        exercises=True)


def test_exercises_leave_the_key_functions_to_the_reader(exercises_repo):
    out = exercises_repo
    found = exercises.for_track(roadmap.track("beginner").nodes,
                                modules.check_nodes(generate.Layout.of("beginner")
                                                    .ours))
    assert [e.node for e in found] == ["tokenizer", "attention", "generation"]
    attention = (out / "ex" / "model.py").read_text()
    assert ("    raise NotImplementedError(\n        'exercise: write "
            "explicit_attention, see step 6: Causal self-attention; MHA, '"
            ) in attention
    assert '"""Causal attention written out' in attention  # the docstring stays
    assert "weights = F.softmax(scores, dim=-1)  # (B, H, T, S)" not in attention
    # the oracle: the reference, as a second package under solutions/
    oracle = (out / "solutions" / "ex_solutions" / "model.py").read_text()
    assert "weights = F.softmax(scores, dim=-1)  # (B, H, T, S)" in oracle
    assert (out / "solutions" / "ex_solutions" / "check" / "attention.py").is_file()
    makefile = (out / "Makefile").read_text()
    assert "\ncheck: venv" in makefile and "\nsolutions:" in makefile
    readme = (out / "README.md").read_text()
    assert "**exercises mode**" in readme and "`make check NODE=attention`" in readme
    assert json.loads((out / ".scaffold.json").read_text())["exercises"] is True
    assert "exercise:" in (out / "tests" / "conftest.py").read_text()


def test_without_exercises_the_repo_has_the_reference_bodies(repos):
    out = repos["beginner"]
    assert not (out / "solutions").exists()
    assert "pytest_runtest_makereport" not in (out / "tests" / "conftest.py"
                                                ).read_text()
    assert "\nsolutions:" not in (out / "Makefile").read_text()


def test_blank_keeps_signature_and_docstring():
    source = ('class A:\n    def f(self, x):\n        """Doc."""\n        y = x\n'
              '        return y\n\n\ndef g():\n    return 1\n')
    blanked = exercises.blank(source, ["A.f", "g"], "see step 1: X")
    namespace: dict = {}
    exec(blanked, namespace)
    assert namespace["A"].f.__doc__ == "Doc."
    for call in (lambda: namespace["A"]().f(1), namespace["g"]):
        with pytest.raises(NotImplementedError, match="^exercise: write"):
            call()
    with pytest.raises(KeyError):
        exercises.blank(source, ["h"], "")


@pytest.mark.slow
def test_exercises_fail_check_until_filled_and_tests_skip_them(exercises_repo):
    out = exercises_repo
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(PYTHONPATH=str(out), OMP_NUM_THREADS="1")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=out, capture_output=True,
                              text=True, env=env, timeout=600)

    tests = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs")
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "skipped" in tests.stdout and "exercise: write merge_pair" in tests.stdout
    unfilled = run("scripts/steps.py", "check")
    assert unfilled.returncode == 1
    assert "FAIL  attention: step 6" in unfilled.stdout
    assert run("scripts/steps.py", "solutions").returncode == 0
    filled = run("scripts/steps.py", "check")
    assert filled.returncode == 0, filled.stdout
    assert filled.stdout.count("pass  ") == 3
