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
import filecmp
import json
import keyword
import logging
import re
import shutil
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
from llm_reference.errors import UserError
from llm_reference.units import fmt_count

from . import modules, roadmap

TEMPLATE = Path(__file__).resolve().parent / "template"
ANSWERS_FILE = ".scaffold.json"
ANSWERS_FORMAT = 1
DEFAULT_NAME = "my-llm"
DEFAULT_TORCH = "2.13.0"
# template files that only a track with this roadmap node uses
NODE_FILES = {
    "finetuning": ("tests/test_finetune.py",),
    "serving": ("tests/test_serve.py",),
    "reasoning": ("tests/test_rl.py",),
    "distributed": ("scripts/launch_torchrun.sh",),
}
# names a package may not take: the starter repo's own folders, and ours
TAKEN = {"data", "runs", "release", "tests", "scripts", "build", "scaffold", "book",
         modules.REFERENCE_NAME}

# cookiecutter logs a failed hook with a traceback; our errors are one line
logging.getLogger("cookiecutter").addHandler(logging.NullHandler())


# ------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Answers:
    """What the user chose; saved as .scaffold.json to regenerate the repo later."""

    track: str
    budget: str
    name: str = DEFAULT_NAME
    torch_version: str = DEFAULT_TORCH

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
                       saved["torch_version"])
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
        },
        "track": {"who": roadmap.track(answers.track).who},
        "features": layout.features,
        "vocab_size": m["vocab_size"],
        "dependencies": modules.requirements(modules.third_party(layout.ours)),
        "dev_dependencies": modules.requirements(["pytest"]),
        "package_data": modules.data_paths(layout.ours),
        "torch_requirement": f"torch=={answers.torch_version}",
        "remove": layout.unused(package),
        "git": git,
    }
    return {"project_name": answers.name, "project_slug": answers.slug,
            "package_name": package, "track": answers.track,
            "budget": answers.budget, "_scaffold": scaffold}


# -------------------------------------------------------------------- render


def stage(answers: Answers, dest: Path) -> Path:
    """A copy of the template with the package's code in it; returns its path."""
    shutil.copytree(TEMPLATE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    layout = Layout.of(answers.track)
    project_dir = dest / "{{cookiecutter.project_slug}}"
    package_dir = project_dir / "{{cookiecutter.package_name}}"  # copied unrendered
    files = modules.package_files(layout.everything, answers.package, layout.ours)
    for relative, content in files.items():
        path = package_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return dest


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
        git: bool = True) -> Path:
    """Generate a starter repo; return its folder.

    Defaults: the track the budget suggests (else beginner), the track's first
    budget preset, the output folder's name as the project's name (else "my-llm"),
    and ./<name as a slug> as the output. Bad input raises a UserError before
    anything is written.
    """
    answers = answers_for(track, budget, output, name, torch_version)
    return new_from(answers, output, force, git)


def answers_for(track: str | None, budget: str | None, output: str | Path | None,
                name: str | None, torch_version: str = DEFAULT_TORCH) -> Answers:
    """The answers, with `new`'s defaults for those not given."""
    track, budget = default_track_and_budget(track, budget)
    name = name or (Path(output).resolve().name if output else DEFAULT_NAME)
    return Answers(track, budget, name, torch_version)


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


def regenerate(directory: str | Path, check_only: bool = False) -> list[str]:
    """Render a generated repo again from its .scaffold.json, in place.

    Returns the files that differ from a fresh rendering (changed or missing), and
    unless `check_only` writes them. Other files (data, runs, your own) and the Git
    history are left alone.
    """
    directory = Path(directory)
    answers = Answers.load(directory / ANSWERS_FILE)
    planned = check(answers)
    with tempfile.TemporaryDirectory(prefix="scaffold-") as tmp:
        fresh = render(answers, planned, Path(tmp), git=False)
        differ = [path for path in tree(fresh)
                  if not (directory / path).is_file()
                  or not filecmp.cmp(fresh / path, directory / path, shallow=False)]
        if not check_only:
            for path in differ:
                write_bytes(directory / path, (fresh / path).read_bytes())
                shutil.copymode(fresh / path, directory / path)
    return differ


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
            "files": files, "commands": ["make test", "make train"]}


def tree(root: Path) -> list[str]:
    """Every file under `root` as a relative POSIX path, sorted; Git's own left out."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and ".git" not in p.relative_to(root).parts)
