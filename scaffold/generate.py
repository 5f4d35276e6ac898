"""A starter repo for a track and a compute budget, in five steps.

1. `Answers` and `check`: the track, budget and project name are checked before
   anything is written; the planner reads the budget and says what it buys.
2. `template_context`: everything the template needs (the plan, the dependencies,
   the files this track does not use) is computed here, in Python; the Jinja
   template only lays it out.
3. `stage`: a copy of the template, plus the package's code copied from
   `llm_reference` (see modules.py) into the folder cookiecutter copies unrendered.
4. `render`: cookiecutter writes the project into a temporary folder; its
   post-generation hook removes what the track does not use and makes the first
   Git commit.
5. `install`: the finished folder is renamed into place. Until then the output
   does not exist, so a failure at any step leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import difflib
import filecmp
import json
import keyword
import logging
import math
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import llm_reference
from llm_reference import plan
from llm_reference.atomic import write_bytes
from llm_reference.budget import parse_budget
from llm_reference.data_plan import fmt_epochs
from llm_reference.errors import UserError
from llm_reference.recipes import RECIPES
from llm_reference.units import fmt_count

from . import exercises, modules, roadmap

TEMPLATE = Path(__file__).resolve().parent / "template"
ANSWERS_FILE = ".scaffold.json"
ANSWERS_FORMAT = 1
DEFAULT_NAME = "my-llm"
DEFAULT_TORCH = "2.13.0"
# template files that only a track with this roadmap node uses
NODE_FILES = {
    "finetuning": ("tests/test_finetune.py",),
    "serving": ("tests/test_serve.py",),
    "reasoning-rl": ("tests/test_rl.py",),
    "distributed": ("scripts/launch_torchrun.sh", "scripts/slurm.sbatch"),
}
# third-party packages that only one command or option needs: a pip extra each
OPTIONAL = {"transformers": "export", "lm_eval": "eval", "tensorboard": "tracking",
            "wandb": "tracking"}
# names a package may not take: the starter repo's own folders, and ours
TAKEN = {"data", "runs", "release", "tests", "scripts", "build", "scaffold", "book",
         modules.REFERENCE_NAME}

# cookiecutter logs a failed hook with a traceback; our errors are one line
logging.getLogger("cookiecutter").addHandler(logging.NullHandler())


# ------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Answers:
    """What the user chose; saved as .scaffold.json to render the repo again later."""

    track: str
    budget: str
    name: str = DEFAULT_NAME
    torch_version: str = DEFAULT_TORCH
    exercises: bool = False  # the key functions' bodies left for the reader

    @property
    def slug(self) -> str:
        return slugify(self.name)

    @property
    def package(self) -> str:
        """'my-llm' -> 'my_llm': the Python package the code is copied into."""
        return self.slug.replace("-", "_")

    def to_json(self) -> str:
        return json.dumps({"format": ANSWERS_FORMAT, **asdict(self),
                           "llm_reference": llm_reference.__version__}, indent=2)

    @classmethod
    def load(cls, path: str | Path) -> Answers:
        """Read the answers of a generated repo (its .scaffold.json)."""
        path = Path(path)
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"{path}: cannot read the answers ({e}); it is the "
                            f"{ANSWERS_FILE} of a generated repo") from None
        if not isinstance(saved, dict) or saved.get("format") != ANSWERS_FORMAT:
            raise UserError(f"{path}: not a version-{ANSWERS_FORMAT} {ANSWERS_FILE}; "
                            "generate the repo again with `python -m scaffold new`")
        try:
            return cls(saved["track"], saved["budget"], saved["name"],
                       saved["torch_version"], bool(saved.get("exercises", False)))
        except KeyError as e:
            raise UserError(f"{path}: the answer {e} is missing") from None


def slugify(name: str) -> str:
    """'My LLM' -> 'my-llm': the project's and the output folder's name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def check(answers: Answers) -> plan.Plan:
    """Reject bad answers with a one-line UserError; return the plan they give."""
    planned = check_budget(answers.track, answers.budget)
    check_name(answers.name)
    if not re.fullmatch(r"\d+(\.\d+)*(\+[a-z0-9.]+)?", answers.torch_version):
        raise UserError(f"--torch-version {answers.torch_version!r}: give a version "
                        f"such as {DEFAULT_TORCH}")
    return planned


def check_budget(track_name: str, budget_text: str) -> plan.Plan:
    """The plan for a budget on a track. Any hardware may follow any track's recipe,
    but several GPUs need a track that teaches distributed training."""
    track = plan.get_track(track_name)  # an unknown one: the error lists them
    budget = parse_budget(budget_text)
    if budget.count > 1 and "distributed" not in roadmap.track(track.name).nodes:
        multi = [name for name in plan.TRACKS
                 if "distributed" in roadmap.track(name).nodes]
        raise UserError(f"budget {budget.text!r} has {budget.count} GPUs but the "
                        f"{track.name} track trains on one device; use --track "
                        f"{' or '.join(multi)}, or a budget such as "
                        f"{track.budgets[0]}")
    return plan.make_plan(budget, track.name)


def check_name(name: str) -> None:
    """A project name gives a folder name (slug) and a package name; both must work."""
    slug = slugify(name)
    if not re.fullmatch(r"[^\W\d_][\w .-]*", name) or not re.fullmatch(
            r"[a-z][a-z0-9-]*", slug):
        raise UserError(f"--name {name!r}: use letters, digits, spaces, '-' and '_', "
                        "starting with a letter, e.g. my-llm")
    package = slug.replace("-", "_")
    if (keyword.iskeyword(package) or package in sys.stdlib_module_names
            or package in TAKEN or package in third_party_names()):
        raise UserError(f"--name {name!r}: its package name {package!r} is already "
                        "a Python module or a folder of the repo; choose another name")


def third_party_names() -> set[str]:
    """The packages the copied code imports (a project named `torch` would shadow)."""
    everything = modules.closure(modules.entry_modules(roadmap.all_nodes()))
    return modules.third_party(everything)


def check_output(out: Path, force: bool) -> None:
    """The output folder must be new or empty, or replaceable with --force."""
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: exists and is not a folder; choose another path")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise UserError(f"-o {out}: the folder exists and is not empty; choose "
                        "another one or pass --force to replace it")
    target, here = out.resolve(), Path.cwd().resolve()
    if target == here or target in here.parents or target == Path.home().resolve():
        raise UserError(f"-o {out}: refusing to replace a folder that holds the "
                        "current directory or your home; choose another path")
    if uncommitted_work(out):
        raise UserError(f"-o {out}: a Git repository with uncommitted work; commit "
                        "or stash it, or choose another folder (--force never "
                        "deletes unsaved work)")


def uncommitted_work(folder: Path) -> bool:
    """Whether `folder` is a Git repository with changes or untracked files that
    its history does not hold (a repository Git cannot read counts as work too)."""
    if not (folder / ".git").exists():
        return False
    if shutil.which("git") is None:
        return True
    status = subprocess.run(["git", "-C", str(folder), "status", "--porcelain"],
                            capture_output=True, text=True)
    return status.returncode != 0 or bool(status.stdout.strip())


# ------------------------------------------------------------------- context


@dataclass(frozen=True)
class Layout:
    """Which modules the template carries, and which of them this track keeps."""

    features: list[str]  # the track's roadmap nodes that have code
    everything: list[str]  # modules any track uses: the staged template's package
    ours: list[str]  # modules this track uses

    @classmethod
    def of(cls, track: str) -> Layout:
        nodes = roadmap.track(track).nodes
        everything = modules.closure(modules.entry_modules(roadmap.all_nodes()))
        return cls(modules.features(nodes), everything,
                   modules.closure(modules.entry_modules(nodes)))

    def unused(self, package: str) -> list[str]:
        """Paths of the template that this track does not use."""
        files = [f"{package}/{m}.py" for m in self.everything
                 if m not in self.ours]
        data = set(modules.data_files(self.everything)) - set(
            modules.data_files(self.ours))
        files += [f"{package}/{name}" for name in sorted(data)]
        files += [path for node, paths in NODE_FILES.items()
                  if node not in self.features for path in paths]
        return files


def template_context(answers: Answers, planned: plan.Plan, git: bool
                     ) -> dict[str, Any]:
    """The cookiecutter variables: the answers, and `_scaffold` for the rest."""
    layout = Layout.of(answers.track)
    package, m = answers.package, planned.model
    summary = dict(planned.summary())
    scaffold = {
        "answers_json": answers.to_json(),
        "config_toml": modules.rename(planned.to_toml(), package).rstrip("\n"),
        "plan": {
            "summary": [[k, modules.rename(v, package)] for k, v in summary.items()],
            "notes": [modules.rename(note, package) for note in planned.notes],
            "params": planned.params,
            "params_text": fmt_count(planned.params),
            "tokens_text": fmt_count(planned.tokens),
            "flops_text": f"{planned.train_flops:.3g}",
            "tokens_per_param": round(planned.tokens_per_param),
            "hardware": summary["hardware"],
            "architecture": (f"{m['n_layer']} layers, d_model {m['d_model']}, "
                             f"{m['n_head']} heads ({m['n_kv_head']} k/v), "
                             f"{m['mlp']} MLP, {m['norm']}, {m['position']} "
                             "positions"),
            "context_length": m["context_length"],
            "devices": planned.budget.count,
            "parallelism": planned.parallelism,
            "expected_loss": summary["expected loss"],
            "uniform_loss": f"{math.log(m['vocab_size']):.2f}",
        },
        "data": data_context(planned),
        "launch": launch_context(planned),
        "track": {"who": roadmap.track(answers.track).who},
        "features": layout.features,
        "vocab_size": m["vocab_size"],
        "dependencies": modules.requirements(
            modules.third_party(layout.ours) - set(OPTIONAL)),
        "extras": extras(layout.ours),
        "dev_dependencies": modules.requirements(["pytest"]),
        "packages": [package] + [
            f"{package}.{m.split('/')[0]}" for m in layout.ours
            if m.endswith("/__init__")],
        "commands": [name for name, module in modules.commands().items()
                     if module in layout.ours],
        "checks": modules.check_nodes(layout.ours),
        "exercises": answers.exercises,
        "oracle": package + ("_solutions" if answers.exercises else ""),
        "steps": steps(answers.track, layout),
        "package_data": modules.data_paths(layout.ours),
        "torch_requirement": f"torch=={answers.torch_version}",
        "remove": layout.unused(package),
        "git": git,
    }
    return {"project_name": answers.name, "project_slug": answers.slug,
            "package_name": package, "track": answers.track,
            "budget": answers.budget, "_scaffold": scaffold}


def steps(track: str, layout: Layout) -> list[dict[str, Any]]:
    """The steps `make check` checks: the track's exercises (exercises.py)."""
    found = exercises.for_track(roadmap.track(track).nodes,
                                modules.check_nodes(layout.ours))
    return [{"node": e.node, "step": exercises.step(e.node)[0],
             "title": exercises.step(e.node)[1], "impl": e.impl,
             "parts": list(e.parts), "modules": e.modules(),
             "functions": list(e.functions)} for e in found]


def extras(ours: list[str]) -> dict[str, list[str]]:
    """The optional dependencies of the copied code, by pip extra: what only one
    command needs (`export`, `eval --tasks`) or the trackers train turns on."""
    wanted = modules.third_party(ours) & set(OPTIONAL)
    if "tracking" in ours:  # these two are imported by name, with importlib
        wanted |= {"tensorboard", "wandb"}
    groups: dict[str, list[str]] = {}
    for name in sorted(wanted):
        groups.setdefault(OPTIONAL[name], []).append(name)
    return {extra: modules.requirements(names) for extra, names in groups.items()}


def data_context(planned: plan.Plan) -> dict[str, Any]:
    """The corpus the plan trains on, and `make data`'s command line for it.

    The planner's command reads `python -m llm_reference prepare …`; the Makefile
    runs the package's `prepare` with those arguments, and a Hub revision the
    planner leaves as COMMIT becomes the Makefile's REVISION variable."""
    data, recipe = planned.data, RECIPES[planned.data.recipe]
    head = f"python -m {modules.REFERENCE_NAME} "
    assert data.command.startswith(head), data.command
    return {"recipe": data.recipe, "out": data.out,
            "tokens_text": fmt_count(data.tokens),
            "epochs_text": fmt_epochs(data.epochs),
            "args": data.command[len(head):].replace("COMMIT", "$(REVISION)"),
            "needs_revision": "COMMIT" in data.command,
            "dataset": recipe.source.removeprefix("hf:").partition(":")[0],
            "license": recipe.license, "size": recipe.size,
            "vocab_size": planned.model["vocab_size"]}


GPUS_PER_NODE = 8  # a cluster node's usual GPUs; a bigger budget spans nodes


def launch_context(planned: plan.Plan) -> dict[str, Any]:
    """How the planned layout starts: one process, torchrun on one machine, or
    srun + torchrun over nodes x GPUs (scripts/slurm.sbatch)."""
    count = planned.budget.count
    per_node = min(count, GPUS_PER_NODE)
    hours, rest = divmod(math.ceil(planned.budget.seconds), 3600)
    return {"devices": count, "gpus_per_node": per_node,
            "nodes": math.ceil(count / per_node),
            "parallelism": planned.parallelism,
            "time_limit": f"{hours // 24}-{hours % 24:02d}:{rest // 60:02d}:"
                          f"{rest % 60:02d}"}


# -------------------------------------------------------------------- render


def stage(answers: Answers, dest: Path) -> Path:
    """A copy of the template with the package's code in it; returns its path."""
    shutil.copytree(TEMPLATE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    layout = Layout.of(answers.track)
    project_dir = dest / "{{cookiecutter.project_slug}}"
    package_dir = project_dir / "{{cookiecutter.package_name}}"  # copied unrendered
    files = modules.package_files(layout.everything, answers.package, layout.ours)
    if answers.exercises:
        files.update(exercise_files(answers, layout))
        oracle = answers.package + "_solutions"
        checked = modules.closure(modules.check_modules(roadmap.track(
            answers.track).nodes))
        solutions = modules.package_files(checked, oracle, checked)
        write_files(project_dir / exercises.SOLUTIONS / oracle, solutions)
    write_files(package_dir, files)
    return dest


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    for relative, content in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def exercise_files(answers: Answers, layout: Layout) -> dict[str, bytes]:
    """The modules of the track's exercises, with the functions' bodies removed."""
    found: dict[str, str] = {}
    for step in steps(answers.track, layout):
        for function in step["functions"]:
            module, _, name = function.partition(":")
            source = found.get(module) or modules.render_module(module,
                                                                answers.package)
            message = (f"see step {step['step']}: {step['title']}; `make check "
                       f"NODE={step['node']}` tells when it is right")
            found[module] = exercises.blank(source, [name], message)
    return {f"{m}.py": text.encode() for m, text in found.items()}


def render(answers: Answers, planned: plan.Plan, workdir: Path, git: bool) -> Path:
    """Run cookiecutter in `workdir`; return the generated project's folder."""
    from cookiecutter.main import cookiecutter

    template = stage(answers, workdir / "template")
    # keep cookiecutter's replay file and rendered hook scripts inside workdir
    config = {"replay_dir": str(workdir / "replay"),
              "cookiecutters_dir": str(workdir / "cookiecutters")}
    with _temporary_files_in(workdir):
        project = cookiecutter(str(template), no_input=True,
                               extra_context=template_context(answers, planned, git),
                               output_dir=str(workdir / "out"), default_config=config)
    return Path(project)


@contextlib.contextmanager
def _temporary_files_in(folder: Path) -> Iterator[None]:
    """Point `tempfile` at `folder` (cookiecutter leaves its rendered hooks there)."""
    saved, tempfile.tempdir = tempfile.tempdir, str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = saved


@contextlib.contextmanager
def _workdir_next_to(out: Path) -> Iterator[Path]:
    """A temporary folder beside `out` (same filesystem: the final rename is atomic);
    parents of `out` that we create are removed again if anything fails."""
    created = [p for p in [out.parent, *out.parent.parents] if not p.exists()]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=".scaffold-", dir=out.parent)).resolve()
    except OSError as e:
        raise UserError(f"-o {out}: cannot create a folder there ({e.strerror}); "
                        "choose a writable path") from None
    try:
        yield workdir
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        for parent in created:  # deepest first
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise
    shutil.rmtree(workdir, ignore_errors=True)


def install(project: Path, out: Path, workdir: Path) -> None:
    """Move the finished project to `out`, replacing an old one (already allowed)."""
    if out.exists():
        out.rename(workdir / "replaced")  # deleted with workdir
    project.rename(out)


# ------------------------------------------------------------------------ API


def new(track: str | None = None, budget: str | None = None,
        output: str | Path | None = None, name: str | None = None,
        force: bool = False, torch_version: str = DEFAULT_TORCH,
        git: bool = True, exercises: bool = False) -> Path:
    """Generate a starter repo; return its folder.

    `exercises` leaves the bodies of the track's key functions for the reader
    (exercises.py). Defaults: the track the budget suggests (else beginner), the
    track's first budget preset, the output folder's name as the project's name
    (else "my-llm"), and ./<name as a slug> as the output. Bad input raises a
    UserError before anything is written.
    """
    answers = answers_for(track, budget, output, name, torch_version, exercises)
    return new_from(answers, output, force, git)


def answers_for(track: str | None, budget: str | None, output: str | Path | None,
                name: str | None, torch_version: str = DEFAULT_TORCH,
                exercises: bool = False) -> Answers:
    """The answers, with `new`'s defaults for those not given."""
    track, budget = default_track_and_budget(track, budget)
    name = name or (Path(output).resolve().name if output else DEFAULT_NAME)
    return Answers(track, budget, name, torch_version, exercises)


def default_track_and_budget(track: str | None, budget: str | None
                             ) -> tuple[str, str]:
    """Fill in what is missing: the budget's track, or the track's first budget."""
    if track is None:
        track = "beginner"
        if budget:
            track = plan.track_for_budget(parse_budget(budget))
    return track, budget or plan.get_track(track).budgets[0]


def new_from(answers: Answers, output: str | Path | None = None, force: bool = False,
             git: bool = True) -> Path:
    """Generate the repo these answers describe (`new --replay` uses the saved ones)."""
    planned = check(answers)
    out = Path(output) if output else Path(answers.slug)
    check_output(out, force)
    with _workdir_next_to(out) as workdir:
        project = render(answers, planned, workdir, git)
        install(project, out, workdir)
    return out


def update(directory: str | Path, apply: bool = False) -> tuple[list[str], str]:
    """Render a generated repo again from its .scaffold.json into a temporary
    folder; return the files that differ (changed or missing) and their unified
    diff, and with `apply` write them. Other files (data, runs, your own) and the
    Git history are left alone.
    """
    directory = Path(directory)
    answers = Answers.load(directory / ANSWERS_FILE)
    planned = check(answers)
    with tempfile.TemporaryDirectory(prefix="scaffold-") as tmp:
        fresh = render(answers, planned, Path(tmp), git=False)
        differ = [path for path in tree(fresh)
                  if not (directory / path).is_file()
                  or not filecmp.cmp(fresh / path, directory / path, shallow=False)]
        diff = "".join(file_diff(directory / path, fresh / path, path)
                       for path in differ)
        if apply:
            for path in differ:
                write_bytes(directory / path, (fresh / path).read_bytes())
                shutil.copymode(fresh / path, directory / path)
    return differ, diff


def file_diff(old: Path, new: Path, name: str) -> str:
    """The unified diff of one file (`old` may be missing: all lines added)."""
    def lines(path: Path) -> list[str]:
        if not path.is_file():
            return []
        return path.read_text(encoding="utf-8", errors="replace").splitlines(True)

    return "".join(difflib.unified_diff(lines(old), lines(new), f"a/{name}",
                                        f"b/{name}"))


def describe(track: str | None = None, budget: str | None = None,
             name: str = DEFAULT_NAME) -> dict[str, Any]:
    """What `new` would generate, without writing it: the plan and the file list.

    For the book: `describe("beginner", "cpu:30m")["files"]`.
    """
    track, budget = default_track_and_budget(track, budget)
    answers = Answers(track, budget, name)
    planned = check(answers)
    with tempfile.TemporaryDirectory(prefix="scaffold-") as tmp:
        files = tree(render(answers, planned, Path(tmp), git=False))
    return {"track": track, "budget": budget, "name": name,
            "package": answers.package, "plan": dict(planned.summary()),
            "notes": planned.notes, "features": Layout.of(track).features,
            "files": files, "commands": ["make test", "make data", "make train"]}


def tree(root: Path) -> list[str]:
    """Every file under `root` as a relative POSIX path, sorted; Git's own left out."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and ".git" not in p.relative_to(root).parts)
