"""Render chapters and templates (Typst + Jinja2) into one Typst file per PDF.

Jinja runs with Typst-safe delimiters: `<< expr >>`, `<% block %>`, `<# comment #>`
(Jinja's `{# #}` would silently eat Typst text), and `StrictUndefined`. Every value an
expression prints is escaped for Typst markup unless a helper marked it as `Typst`
(already markup); code is always inserted as a Typst string in `raw(...)`, never
pasted into markup.

Typst reports errors against the generated file. To map them back, every source line
that starts in template text gets an invisible marker (file id and line) before Jinja
sees it; after rendering, the markers are stripped and give, for each generated line,
the chapter or template line it came from.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import jinja2

from . import snippets
from .errors import BuildError
from .execute import Result
from .roadmap import Node, Roadmap

# --- escaping --------------------------------------------------------------------

MARKUP_SPECIAL = re.compile(r"""([\\#*_`$<>@=+\-/\[\]~"'])""")


class Typst(str):
    """A string that is already Typst markup: printed as is."""


def escape(text: str) -> str:
    """Plain text -> Typst markup that shows exactly that text."""
    return MARKUP_SPECIAL.sub(r"\\\1", text)


def tstr(text: str) -> Typst:
    """Plain text -> a Typst string literal (for code mode: raw(), arguments)."""
    out = text.replace("\\", "\\\\").replace('"', '\\"')
    out = out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return Typst(f'"{out}"')


def content(text: str) -> Typst:
    """Plain text -> a Typst content block `[...]`, escaped."""
    return Typst(f"[{escape(text)}]")


def prose(text: str) -> Typst:
    """Plain text whose `backticked` spans are code -> a Typst content block."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unmatched backtick is just a character
        return content(text)
    out = [escape(p) if i % 2 == 0 else f"#raw({tstr(p)})" for i, p in enumerate(parts)]
    return Typst("[" + "".join(out) + "]")


def _finalize(value: Any) -> str:
    if isinstance(value, Typst):
        return value
    if isinstance(value, bool):
        return escape(str(value).lower())
    return escape(str(value))


def num(value: Any, digits: int = 0) -> str:
    """1234567.8 -> '1,234,568'; with digits=2 -> '1,234,567.80'."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:,.{digits}f}"


# --- line markers ----------------------------------------------------------------

MARK = re.compile("\ue000(\\d+):(\\d+)\ue001")
OPENERS = re.compile(r"<<|<%|<#")
CLOSERS = {"<<": ">>", "<%": "%>", "<#": "#>"}
TAG_ONLY = re.compile(r"\s*(<%.*?%>|<#.*?#>)\s*\n?")


def mark_lines(source: str, file_id: int) -> str:
    """Prefix each line that starts in template text with a marker (file_id, line).

    Lines that hold only a block tag or a comment get none: with trim_blocks and
    lstrip_blocks Jinja removes them entirely.
    """
    out: list[str] = []
    closer: str | None = None  # the delimiter we are waiting for, inside a tag
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        if closer is None and not TAG_ONLY.fullmatch(line):
            out.append(f"\ue000{file_id}:{number}\ue001")
        out.append(line)
        pos = 0
        while True:
            if closer is None:
                m = OPENERS.search(line, pos)
                if not m:
                    break
                closer, pos = CLOSERS[m.group()], m.end()
            else:
                end = line.find(closer, pos)
                if end < 0:
                    break
                closer, pos = None, end + len(closer)
    return "".join(out)


def strip_marks(text: str, files: list[Path]) -> tuple[str, list[tuple[Path, int]]]:
    """Remove markers; return the text and, per output line, its (file, line)."""
    lines, where = [], []
    current = (files[0] if files else Path("?"), 1)
    for line in text.split("\n"):
        marks = MARK.findall(line)
        if marks:
            fid, num_ = marks[0]
            where.append((files[int(fid)], int(num_)))
            fid, num_ = marks[-1]
            current = (files[int(fid)], int(num_))
        else:
            where.append(current)
        lines.append(MARK.sub("", line))
    return "\n".join(lines), where


class MarkedLoader(jinja2.BaseLoader):
    """Loads templates by name from search folders, adding line markers."""

    def __init__(self, folders: list[Path], files: list[Path]):
        self.folders = folders
        self.files = files  # shared registry: marker file id -> path

    def get_source(self, environment, template):
        for folder in self.folders:
            path = folder / template
            if path.is_file():
                path = path.resolve()
                if path not in self.files:
                    self.files.append(path)
                source = path.read_text(encoding="utf-8")
                mtime = path.stat().st_mtime_ns
                return (mark_lines(source, self.files.index(path)), str(path),
                        lambda path=path, mtime=mtime: path.stat().st_mtime_ns == mtime)
        raise jinja2.TemplateNotFound(template)


def make_env(folders: list[Path], files: list[Path]) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=MarkedLoader(folders, files), undefined=jinja2.StrictUndefined,
        block_start_string="<%", block_end_string="%>",
        variable_start_string="<<", variable_end_string=">>",
        comment_start_string="<#", comment_end_string="#>",
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        autoescape=False, finalize=_finalize)
    env.filters.update(num=num, tstr=tstr, content=content, escape=escape,
                       typst=lambda s: Typst(s))
    return env


def render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    """Render with errors reported as 'file:line: message' of the template source."""
    try:
        return env.get_template(name).render(**context)
    except jinja2.TemplateSyntaxError as e:
        raise BuildError(f"{e.filename}:{e.lineno}: template syntax error: "
                         f"{e.message}") from None
    except Exception as e:
        registry = getattr(env.loader, "files", [])
        names = {str(p) for p in registry}
        frames = [f for f in traceback.extract_tb(e.__traceback__)
                  if f.filename in names]
        where = f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""
        if isinstance(e, BuildError):
            raise BuildError(f"{where}{e}") from None
        if isinstance(e, jinja2.UndefinedError):
            raise BuildError(f"{where}undefined in template: {e.message}") from None
        raise BuildError(f"{where}{type(e).__name__}: {e}") from None


# --- what a variant of the book holds -----------------------------------------------


@dataclass
class Variant:
    """One PDF: every node (track None) or one track's nodes at its depth."""
    name: str                   # "all" or the track name
    track: str | None
    only: str | None = None     # preview of a single node (--only)
    web: bool = False           # one chapter per HTML page: links go to other pages

    @property
    def label(self) -> str:
        return "all tracks" if self.track is None else f"{self.track} track"


@dataclass
class Book:
    """Everything the templates need that does not depend on the variant."""
    roadmap: Roadmap
    results: dict[str, Result]       # node id -> experiment result
    templates: Path
    build_dir: Path                  # Typst root for compilation
    quoted: dict[str, str] = field(default_factory=dict)  # ref -> file (for manifest)
    source: dict[str, Any] = field(default_factory=dict)  # source.py: commit, archive
    plans: dict[str, Any] = field(default_factory=dict)  # track -> the planner's Plan

    def number(self, node: Node) -> int:
        return self.roadmap.nodes.index(node) + 1

    def plan(self, track: str) -> Any:
        """The planner's run for the track's first budget (`make_plan` of the
        roadmap's [book] plan module), computed once per build."""
        if track not in self.roadmap.tracks:
            raise BuildError(f"planned({track!r}): no such track (known: "
                             f"{', '.join(self.roadmap.tracks)})")
        make_plan = getattr(self.roadmap.plan, "make_plan", None)
        if make_plan is None:
            raise BuildError(f"planned({track!r}): the planner "
                             f"{self.roadmap.plan.__name__} has no make_plan")
        if track not in self.plans:
            self.plans[track] = make_plan(self.roadmap.tracks[track].budgets[0], track)
        return self.plans[track]


def _depths(book: Book, node: Node, variant: Variant) -> list[dict[str, Any]]:
    tracks = book.roadmap.tracks
    names = [variant.track] if variant.track else list(tracks)
    return [{"name": t, "depth": tracks[t].depth.get(node.id)} for t in names]


def estimates(book: Book, node: Node, variant: Variant) -> list[tuple[str, Any]]:
    """(track, node_estimate(spec, track)) for each track of this PDF with node."""
    return [(e["name"], book.roadmap.estimates[(node.id, e["name"])])
            for e in _depths(book, node, variant)
            if (node.id, e["name"]) in book.roadmap.estimates]


def number(value: float | int) -> Typst:
    """A number as Typst markup: 1,234 / 12.35 / 3.00 × 10^15 (superscript)."""
    if isinstance(value, float) and math.isfinite(value) and value != 0 and (
            abs(value) >= 1e6 or abs(value) < 1e-2):
        mantissa, exp = f"{value:.2e}".split("e")
        return Typst(f"{escape(mantissa)} × 10#super[{escape(str(int(exp)))}]")
    if isinstance(value, float):
        return Typst(escape(num(value, 2 if abs(value) < 100 else 0)))
    return Typst(escape(num(value)))


def _fmt_estimate(value: Any) -> Typst:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Typst(f"[{number(value)}]")
    return content(str(value))


def duration(seconds: float) -> str:
    """90 -> '1.5 min'; 0 -> '–'."""
    if seconds <= 0:
        return "–"
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.2g} s"


def size(n: float) -> str:
    """1.5e9 -> '1.4 GiB'; 0 -> '–'."""
    if n <= 0:
        return "–"
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def money(cost: Any) -> str:
    """{'low': 1.2, 'high': 3.4} -> '$1.20–3.40'; zero -> 'none'."""
    low, high = (cost["low"], cost["high"]) if isinstance(cost, dict) else (cost, cost)
    if high <= 0:
        return "none"
    if high < 0.005:
        return "< $0.01"
    fmt = (lambda x: f"{x:,.2f}") if high < 100 else (lambda x: f"{x:,.0f}")
    return f"${fmt(low)}" if low == high else f"${fmt(low)}–{fmt(high)}"


# the estimate card's rows: key in node_estimate's dict -> (label, format)
ESTIMATE_ROWS: dict[str, tuple[str, Callable[[Any], Typst]]] = {
    "hardware": ("Hardware", lambda v: content(str(v))),
    "flops": ("Compute (FLOPs)", lambda v: Typst(f"[{number(float(v))}]") if v
              else content("–")),
    "seconds": ("Wall time", lambda v: content(duration(float(v)))),
    "cost_usd": ("Cost (on demand)", lambda v: content(money(v))),
    "memory_bytes": ("Memory per device", lambda v: content(size(float(v)))),
}
HIDDEN_ESTIMATE_KEYS = {"kind", "track", "note", "hardware_key", "count"}


def estimate_card(book: Book, node: Node, variant: Variant) -> Typst:
    """node_estimate (estimates.py) for each track of this PDF, as one table."""
    per_track = estimates(book, node, variant)
    if not per_track:
        return Typst("")
    keys: list[str] = [k for k in ESTIMATE_ROWS if any(k in e for _, e in per_track)]
    for _, est in per_track:
        keys += [k for k in est if k not in keys and k not in ESTIMATE_ROWS
                 and k not in HIDDEN_ESTIMATE_KEYS]
    rows = []
    empty = {content("–"), content("none")}
    for k in keys:
        label, fmt = ESTIMATE_ROWS.get(k, (k.replace("_", " "), _fmt_estimate))
        values = [fmt(est[k]) if k in est else content("–") for _, est in per_track]
        if k != "hardware" and set(values) <= empty:
            continue  # e.g. no compute at all for a reading step
        rows.append("(" + ", ".join([content(label), *values]) + ",)")
    texts = [str(est["note"]) for _, est in per_track if est.get("note")]
    notes = texts[:1] if len(set(texts)) == 1 else [
        f"{t}: {est['note']}" for t, est in per_track if est.get("note")]
    tracks = ", ".join(f"(name: {tstr(t)}, label: {tstr(t)})" for t, _ in per_track)
    note = ("[" + " #linebreak() ".join(prose(n)[1:-1] for n in notes) + "]" if notes
            else "none")
    return Typst(f"#estimate-card(tracks: ({tracks},), rows: ({', '.join(rows)},), "
                 f"note: {note})")


def estimate_line(book: Book, node: Node, variant: Variant) -> Typst:
    """The estimate in one sentence per track: wall time, hardware, cost."""
    parts = []
    for t, est in estimates(book, node, variant):
        seconds = float(est.get("seconds", 0) or 0)
        time_ = duration(seconds) if seconds > 0 else "no compute"
        cost = money(est["cost_usd"]) if "cost_usd" in est else "–"
        parts.append(f"#text(fill: track-color({tstr(t)}))[{escape(t)}]: "
                     f"{escape(time_)} on {escape(str(est.get('hardware', '?')))}"
                     + (f", {escape(cost)}" if cost not in ("none", "–") else ""))
    return Typst("; ".join(parts))


def check_command(node: Node) -> str | None:
    if node.check is None:
        return None
    generic = f"python -m llm_reference check {node.check} --impl your_module:your_attr"
    return node.check_command or generic


def _list(items: list[str], fn: Callable[[str], str]) -> str:
    return "(" + "".join(fn(i) + ", " for i in items) + ")"


def compliance_box(node: Node) -> Typst:
    if not node.compliance and not node.automated_checks:
        return Typst("")
    return Typst(f"#compliance-box(notes: {_list(node.compliance, prose)}, "
                 f"checks: {_list(node.automated_checks, prose)})")


def tools_list(node: Node) -> Typst:
    if not node.tools:
        return Typst("")
    tools = "".join(f"(name: {tstr(t.name)}, url: {tstr(t.url)}), " for t in node.tools)
    return Typst(f"#tools-list(tools: ({tools}))")


class Chapter:
    """The helpers a chapter's source can call, bound to its node and variant."""

    BOXES = ("checkpoint", "estimate", "compliance", "tools")

    def __init__(self, book: Book, node: Node, variant: Variant, linkable: set[str]):
        self.book, self.node, self.variant = book, node, variant
        self.linkable = linkable
        self.used: set[str] = set()
        self.result = book.results.get(node.id)

    # code and outputs
    def code(self, ref: str) -> Typst:
        s = snippets.quote(self.book.roadmap.src_root, ref)
        self.book.quoted[ref] = s.path
        return Typst(f"#code-listing(path: {tstr(s.path)}, symbol: {tstr(s.symbol)}, "
                     f"first: {s.first}, last: {s.last}, code: {tstr(s.text)})")

    def _result(self) -> Result:
        if self.result is None:
            raise BuildError(f"node {self.node.id!r} has no experiment in the roadmap, "
                             "so its chapter cannot show experiment outputs")
        return self.result

    def printed(self, cell: int | str | None = None) -> Typst:
        return Typst(f"#output-block({tstr(self._result().output(cell))})")

    def output(self, cell: int | str | None = None) -> str:
        return self._result().output(cell)

    def data(self, name: str) -> Any:
        path = self._result().file(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise BuildError(f"{self.node.experiment}: {name} is not JSON: "
                             f"{e}") from None

    def asset(self, name: str) -> Typst:
        """Copy an experiment's file into the Typst root; a path string for image()."""
        result = self._result()
        src = result.file(name)
        rel = f"assets/{result.experiment.name}/{name}"
        dst = self.book.build_dir / rel
        if not dst.is_file() or dst.read_bytes() != src.read_bytes():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        return tstr(f"/{rel}")

    def figure(self, name: str, caption: str, width: str = "100%") -> Typst:
        return Typst(f"#figure(image({self.asset(name)}, width: {width}, "
                     f"alt: {tstr(caption)}), caption: [{caption}])")

    def table(self, rows: list[dict[str, Any]], columns: list[str],
              header: list[str] | None = None,
              digits: dict[str, int | None] | None = None) -> Typst:
        """A Typst table of `rows` (dicts); numbers get thousands separators and
        `digits[col]` decimals (None: printed as is)."""
        digits = digits or {}
        head = ", ".join(content(h) for h in (header or columns))
        cells = []
        for row in rows:
            for col in columns:
                value, places = row[col], digits.get(col, 0)
                number_ = isinstance(value, (int, float)) and places is not None
                cells.append(content(num(value, places) if number_ else str(value)))
        align = ", ".join("left" if i == 0 else "right" for i in range(len(columns)))
        return Typst(f"#table(columns: {len(columns)}, align: ({align},), "
                     f"table.header({head}), {', '.join(cells)})")

    def target(self, node_id: str) -> str:
        """Where a link to a node's chapter points: its label in the PDF, its page
        (or, without a chapter, its card on the roadmap page) on the web."""
        if not self.variant.web:
            return f"<node-{node_id}>"
        if self.book.roadmap.by_id[node_id].chapter is None:
            return tstr(f"index.html#card-{node_id}")
        return tstr(f"{node_id}.html")

    def ref(self, node_id: str) -> Typst:
        by_id = self.book.roadmap.by_id
        if node_id not in by_id:
            raise BuildError(f"ref({node_id!r}): no such roadmap node")
        title = escape(by_id[node_id].title)
        if node_id in self.linkable:
            return Typst(f"#link({self.target(node_id)})[{title}]")
        return Typst(f"_{title}_ (not in this track)")

    def step(self, node_id: str) -> Typst:
        """'step N', a link to that step's chapter when it is in this PDF.

        A track's edition never refers to a step it leaves out: such a call is a
        BuildError (reported at the chapter's line). Jinja evaluates only the branch
        of an `<% if track ... %>` block that applies, so a reference the chapter
        wrote for the tracks that have the step is fine."""
        by_id = self.book.roadmap.by_id
        if node_id not in by_id:
            raise BuildError(f"step({node_id!r}): no such roadmap node")
        label = f"step {self.book.number(by_id[node_id])}"
        track = self.variant.track
        if track is not None and node_id not in self.book.roadmap.tracks[track].depth:
            raise BuildError(
                f"step({node_id!r}): the {track} edition leaves out {label} "
                f"({by_id[node_id].title}); reword the sentence, or put it in a "
                f"block such as <% if track in (none, ...) %> for the tracks that "
                f"include it")
        if node_id in self.linkable:
            return Typst(f"#link({self.target(node_id)})[{label}]")
        return Typst(label)

    def has(self, node_id: str) -> bool:
        """Whether this edition includes the step: for `<% if has("serving") %>`
        blocks (the full edition and the web edition include every step)."""
        if node_id not in self.book.roadmap.by_id:
            raise BuildError(f"has({node_id!r}): no such roadmap node")
        track = self.variant.track
        return track is None or node_id in self.book.roadmap.tracks[track].depth

    def see(self, node_id: str) -> Typst:
        """' (step N)' where this edition includes the step, nothing where it does
        not: a pointer onwards that a track without that step simply drops."""
        if not self.has(node_id):
            return Typst("")
        return Typst(f" ({self.step(node_id)})")

    def opening(self) -> Typst:
        """The reading guide under the chapter's heading: the steps it builds on and,
        for each track of this edition that includes it, read / skim / skip and why
        (the node's `[node.guidance]` in the roadmap)."""
        by_id = self.book.roadmap.by_id
        needs = [f"[{self.step(d)} ({escape(by_id[d].title)})]"
                 for d in self.node.requires]
        names = ([self.variant.track] if self.variant.track
                 else list(self.book.roadmap.tracks))
        advice = [f"(name: {tstr(t)}, verdict: {tstr(v)}, text: {prose(a)})"
                  for t in names if t in self.node.guidance
                  for v, a in [self.node.guidance[t]]]
        if not needs and not advice:
            return Typst("")
        return Typst(f"#reading-guide(needs: {_list(needs, str)}, "
                     f"tracks: {_list(advice, str)})")

    PLANNED = {"model": "the planned model", "training": "the planned run",
               "efficiency": "the planned precision and throughput",
               "layout": "the planned layout"}

    def planned(self, track: str, about: str = "model") -> Typst:
        """The track's planned run, as a panel: what the planner picks for its first
        budget, seen from one step (`about`: the model config, the training
        schedule, the efficiency assumptions or the parallel layout), with the
        estimates behind it. Nothing in it is typed into the chapter."""
        if about not in self.PLANNED:
            raise BuildError(f"planned({track!r}, {about!r}): choose one of "
                             f"{', '.join(self.PLANNED)}")
        plan = self.book.plan(track)
        rows = getattr(self, f"_planned_{about}")(plan)
        cells = ", ".join(f"{content(k)}, {content(v)}" for k, v in rows)
        command = (f"python -m llm_reference plan --budget {plan.budget.text} "
                   f"--track {track} --out plan.toml")
        title = f"{track.capitalize()}: {self.PLANNED[about]} for {plan.budget.text}"
        return Typst(
            f"#panel({content(title)}, track-color({tstr(track)}))[The planner's "
            f"choice for this track's first budget, computed by this build "
            f"(#raw({tstr(command)})); the chapter's own numbers are the CPU toy's."
            f"\n#table(columns: 2, stroke: none, inset: 2.5pt, {cells})]")

    @staticmethod
    def _planned_model(plan: Any) -> list[tuple[str, str]]:
        model = plan.model
        fields = [("layers", model["n_layer"]), ("d_model", model["d_model"]),
                  ("heads (k/v)", f"{model['n_head']} ({model['n_kv_head']})"),
                  ("d_ff", model["d_ff"]), ("MLP", model["mlp"]),
                  ("positions", model["position"]), ("norm", model["norm"]),
                  ("context", model["context_length"]),
                  ("vocabulary", model["vocab_size"]),
                  ("tied head", model["tie_weights"])]
        rows = [(k, num(v) if isinstance(v, int) and not isinstance(v, bool)
                 else str(v).lower()) for k, v in fields]
        return rows + [(k, v) for k, v in plan.summary() if k != "budget"]

    @staticmethod
    def _planned_training(plan: Any) -> list[tuple[str, str]]:
        t, summary = plan.train, dict(plan.summary())
        return [
            ("model", summary["model"]), ("hardware", summary["hardware"]),
            ("steps x batch", summary["steps"]),
            ("learning rate", f"{t['lr']:g} after {num(t['warmup_steps'])} warmup "
                              f"steps, {t['schedule']} to {t['min_lr']:g}"),
            ("AdamW", f"beta1 {t['beta1']}, beta2 {t['beta2']}, weight decay "
                      f"{t['weight_decay']}, clipping at {t['grad_clip']}"),
            ("precision", f"{t['dtype']}, torch.compile "
                          f"{'on' if t['compile'] else 'off'}"),
            ("evaluation", f"every {num(t['eval_interval'])} steps, "
                           f"{t['eval_steps']} batches"),
            ("checkpoints", f"every {num(t['checkpoint_interval'])} steps or "
                            f"{t['checkpoint_minutes']:g} minutes, last "
                            f"{t['keep_last']} kept"),
            *[(k, summary[k]) for k in ("tokens", "time", "cost", "expected loss")]]

    @staticmethod
    def _planned_efficiency(plan: Any) -> list[tuple[str, str]]:
        hw, t, summary = plan.hardware, plan.train, dict(plan.summary())
        per_device = hw.peak_tflops * 1e12 * plan.mfu / plan.flops_per_token
        return [
            ("hardware", summary["hardware"]),
            ("peak", f"{hw.peak_tflops:g} TFLOP/s per device in {hw.dtype} "
                     f"({hw.fp32_tflops:g} in fp32, {hw.tf32_tflops:g} in TF32)"),
            ("precision", "float32, matmuls on TF32 tensor cores"
             if t["dtype"] == "float32"
             else f"{t['dtype']} autocast, float32 weights and AdamW states"),
            ("torch.compile", "on" if t["compile"] else "off"),
            ("activation checkpointing",
             "on (+1/3 compute)" if plan.activation_checkpointing else "off"),
            ("assumed MFU", f"{plan.mfu:.0%}"),
            ("throughput", f"{num(per_device)} tokens/s per device "
                           "(peak x MFU / FLOPs per token)"),
            *[(k, summary[k]) for k in ("compute", "memory", "time")]]

    @staticmethod
    def _planned_layout(plan: Any) -> list[tuple[str, str]]:
        summary, count = dict(plan.summary()), plan.budget.count
        how = {"single": "one process, no gradient exchange",
               "ddp": f"DDP: a full replica on each of the {count} GPUs, gradients "
                      "all-reduced once per step",
               "fsdp": f"FSDP2: weights, gradients and AdamW states sharded over "
                       f"the {count} GPUs"}[plan.parallelism]
        launch = ("python -m llm_reference train --config plan.toml" if count == 1
                  else f"torchrun --standalone --nproc-per-node {count} "
                       "-m llm_reference train --config plan.toml")
        link = ([("interconnect", f"{plan.hardware.link_gbs:g} GB/s per GPU, each "
                  "way")] if count > 1 else [])
        return [
            ("hardware", summary["hardware"]), ("parallelism", how),
            ("steps x batch", summary["steps"]), ("memory", summary["memory"]),
            *link, ("launch", launch), ("time", summary["time"]),
            ("cost", summary["cost"])]

    # the boxes every chapter has
    def checkpoint(self) -> Typst:
        self.used.add("checkpoint")
        check = check_command(self.node)
        check_arg = tstr(check) if check else "none"
        starter = self.node.check_starter
        starter_arg = tstr(starter.name) if check and starter else "none"
        files = self.attachment_names()
        if self.result is None or not self.result.cells:
            if check is None:
                return Typst("")
            start = (f"block[Start from the attached #raw({starter_arg}): replace "
                     f"each `raise NotImplementedError`, then run, in its folder:] + "
                     if starter_arg != "none" else "")
            return Typst(f"#panel([Checkpoint], rgb(\"#bf8700\"), "
                         f"[*Validate your own implementation*] + {start}"
                         f"block(raw({tstr(check)}, lang: \"bash\", block: true)))")
        cells = self.result.checkpoint_cells()
        run = "\n\n".join(c.source for c in cells)
        out = "".join(c.text for c in cells)
        return Typst(f"#checkpoint-box(run: {tstr(run)}, first: {cells[0].line}, "
                     f"output: {tstr(out)}, check: {check_arg}, "
                     f"starter: {starter_arg}, files: {_list(files, tstr)})")

    def estimate(self) -> Typst:
        self.used.add("estimate")
        return estimate_card(self.book, self.node, self.variant)

    def compliance(self) -> Typst:
        self.used.add("compliance")
        return compliance_box(self.node)

    def tools(self) -> Typst:
        self.used.add("tools")
        return tools_list(self.node)

    def remaining_boxes(self) -> Typst:
        """The boxes the chapter did not place itself, in the standard order."""
        parts = [getattr(self, b)() for b in self.BOXES if b not in self.used]
        return Typst("\n\n".join(p for p in parts if p))

    def attachment_names(self) -> list[str]:
        names = []
        if self.result is not None:
            name = self.result.experiment.name
            names += [f"{name}.py", f"{name}.ipynb"]
        if self.node.check_starter is not None:
            names.append(self.node.check_starter.name)
        return names

    def context(self) -> dict[str, Any]:
        ctx: dict[str, Any] = {name: getattr(self, name) for name in (
            "code", "printed", "output", "data", "asset", "figure", "table", "ref",
            "step", "has", "see", "planned",
            "checkpoint", "estimate", "compliance", "tools")}
        ctx.update(node=self.node, track=self.variant.track, variant=self.variant,
                   result=self.result, num=num)
        return ctx


# --- the node card ----------------------------------------------------------------

CARD_SNIPPET_LINES = 12  # the key snippet on a node card: the first lines of its code


def key_snippet(book: Book, node: Node) -> Typst:
    """The first lines of the node's first quoted symbol, as a code listing."""
    if not node.code:
        return Typst("")
    s = snippets.quote(book.roadmap.src_root, node.code[0])
    lines = s.text.splitlines()
    shown = "\n".join(lines[:CARD_SNIPPET_LINES])
    more = len(lines) - CARD_SNIPPET_LINES
    last = s.first + min(len(lines), CARD_SNIPPET_LINES) - 1
    listing = (f"#code-listing(path: {tstr(s.path)}, symbol: {tstr(s.symbol)}, "
               f"first: {s.first}, last: {last}, code: {tstr(shown)})")
    if more > 0:
        listing += (f"\n#text(8pt, fill: muted)[… {more} more lines in the "
                    "chapter]")
    return Typst(listing)


def node_card(book: Book, node: Node, nodes: list[Node], linkable: set[str],
              carded: set[str]) -> dict[str, Any]:
    """What a node card shows besides the node itself: its parents and children
    in this PDF, with the artifacts that flow, linked to their cards."""
    ids = {n.id for n in nodes}

    def step(node_id: str, artifact: str | None) -> dict[str, Any]:
        other = book.roadmap.by_id[node_id]
        target = node_target(node_id, linkable, carded)
        title = f"{other.title} (step {book.number(other)})"
        return {"link": Typst(f"#link({target})[{escape(title)}]" if target
                              else escape(title)), "artifact": artifact}

    return {
        "inputs": [step(p, a) for p, a in node.edges if p in ids],
        "feeds": [step(n.id, a) for n in nodes for p, a in n.edges if p == node.id],
        "snippet": key_snippet(book, node),
        "check": check_command(node),
        "compliance": [prose(c) for c in node.compliance],
        "tools": Typst(" · ".join(f"#link({tstr(t.url)})[{escape(t.name)}]"
                                  for t in node.tools)),
    }


# --- the roadmap drawing -----------------------------------------------------------

LANE_HEADER = 12.0  # points above the graph for the lanes' names


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _pt(value: float) -> str:
    return f"{round(value, 2)}pt"


def badge(node: dict[str, Any]) -> str | None:
    """'2.4 h · $3–7': a node's time and cost in the graph's track; None: none."""
    seconds = node.get("seconds")
    if seconds is None:
        return None
    cost = money(node["cost_usd"]) if node.get("cost_usd") is not None else "none"
    time_ = duration(float(seconds)) if seconds else "reading"
    return time_ if cost == "none" else f"{time_} · {cost}"


def node_target(node_id: str, linkable: set[str], carded: set[str]) -> str | None:
    """Where a click on a node goes: its card, else its chapter, else nowhere."""
    if node_id in carded:
        return f"<card-{node_id}>"
    return f"<node-{node_id}>" if node_id in linkable else None


def roadmap_drawing(graph: dict[str, Any], linkable: set[str], carded: set[str], *,
                    fit: tuple[float, float] | None = None) -> Typst:
    """Typst that draws `graph` (graph.roadmap_graph): lanes, edges with their
    artifacts, nodes with their depth, badge and link. The graph's track decides
    the depths, badges and critical path; with none, each node shows one pill per
    track. `fit`: (width, height) in points to scale the drawing down into."""
    track = graph["track"]
    nodes = {n["id"]: n for n in graph["nodes"]}
    height = graph["height"] + LANE_HEADER
    lines = [f"box(width: {_pt(graph['width'])}, height: {_pt(height)}, {{"]
    for lane in graph["lanes"]:
        lines.append(f"  roadmap-lane({_pt(lane['x'])}, {_pt(lane['w'])}, "
                     f"{_pt(height)}, {tstr(lane['name'])})")
    lines.append(f"  place(dy: {_pt(LANE_HEADER)}, box({{")
    for e in graph["edges"]:
        pts = ", ".join(f"({_pt(x)}, {_pt(y)})" for x, y in e["points"])
        dim = track is not None and (nodes[e["source"]]["depth"] is None
                                     or nodes[e["target"]]["depth"] is None)
        label = tstr(e["label"]) if e["label"] else "none"
        at = (f"({_pt(e['label_at'][0])}, {_pt(e['label_at'][1])})"
              if e["label_at"] else "none")
        lines.append(f"    roadmap-edge(({pts},), label: {label}, label-at: {at}, "
                     f"label-end: {_bool(e['label_anchor'] == 'end')}, "
                     f"critical: {_bool(e['critical'])}, dim: {_bool(dim)})")
    for n in graph["nodes"]:
        depth = n["depth"] if track else (
            "core" if "core" in n["depths"].values() else "optional")
        pills = "" if track else "".join(
            f"(name: {tstr(t)}, depth: {tstr(d)}), "
            for t, d in n["depths"].items() if d)
        text = badge(n) if track else None
        shape = (f"roadmap-node(w: {_pt(n['w'])}, h: {_pt(n['h'])}, "
                 f"number: {n['number']}, title: {content(n['title'])}, "
                 f"lane: {tstr(n['lane'])}, "
                 f"depth: {tstr(depth) if depth else 'none'}, "
                 f"components: {_list(n['components'], tstr)}, "
                 f"badge: {tstr(text) if text else 'none'}, "
                 f"critical: {_bool(n['critical'])}, pills: ({pills}), "
                 f"pending: {_bool(n['pending'])})")
        if target := node_target(n["id"], linkable, carded):
            shape = f"link({target}, {shape})"
        lines.append(f"    place(dx: {_pt(n['x'])}, dy: {_pt(n['y'])}, {shape})")
    lines.append("  }))")
    lines.append("})")
    drawing = "\n".join(lines)
    if fit:
        factor = min(1.0, fit[0] / graph["width"], fit[1] / height)
        if factor < 1.0:
            drawing = f"scale({round(factor * 100, 2)}%, reflow: true, {drawing})"
    return Typst(drawing)


def roadmap_legend(graph: dict[str, Any], tracks: list[str]) -> Typst:
    lanes = ", ".join(tstr(lane["name"]) for lane in graph["lanes"])
    names = ", ".join(tstr(t) for t in tracks)
    absent = graph["track"] is not None and any(
        n["depth"] is None for n in graph["nodes"])
    return Typst(f"roadmap-legend(lanes: ({lanes},), tracks: ({names},), "
                 f"pills: {_bool(graph['track'] is None)}, "
                 f"badges: {_bool(graph['track'] is not None)}, "
                 f"absent: {_bool(absent)})")


def minimap(graph: dict[str, Any], current: str, linkable: set[str],
            carded: set[str], width: float = 96) -> Typst:
    """The roadmap in `width` points, boxes only, with the `current` step filled;
    each box links like the roadmap's."""
    s = width / graph["width"]
    lines = [f"box(width: {_pt(width)}, height: {_pt(graph['height'] * s)}, {{"]
    for e in graph["edges"]:
        pts = [f"({_pt(x * s)}, {_pt(y * s)})" for x, y in e["points"]]
        segments = [f"curve.move({pts[0]})"] + [f"curve.line({p})" for p in pts[1:]]
        lines.append(f"  place(curve(stroke: 0.3pt + absent-color, "
                     f"{', '.join(segments)}))")
    for n in graph["nodes"]:
        depth = n["depth"] if graph["track"] else "core"
        shape = (f"minimap-node({_pt(n['w'] * s)}, {_pt(n['h'] * s)}, "
                 f"{tstr(n['lane'])}, {tstr(depth) if depth else 'none'}, "
                 f"{_bool(n['id'] == current)})")
        if target := node_target(n["id"], linkable, carded):
            shape = f"link({target}, {shape})"
        lines.append(f"  place(dx: {_pt(n['x'] * s)}, dy: {_pt(n['y'] * s)}, {shape})")
    lines.append("})")
    return Typst("\n".join(lines))
