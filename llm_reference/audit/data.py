"""Checks of a prepared data folder's provenance: licences, and reproducibility.

`prepare` writes `manifest.json` with every source, its declared licence, what
cleaning removed, the settings and tool versions, and the sha256 of every output, and
no timestamp: the same inputs must give the same bytes. These checks hold it to that.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..data import PrepareSettings, prepare
from .files import line_of, read_json
from .registry import Finding, Outcome, Targets, check


@check("data.licenses-declared",
       verifies="every source in the data manifest has a declared licence and the "
                "manifest has no warnings",
       why="a source of unknown licence may not allow training a model or releasing "
           "one; the release's model card can only list licences that were declared",
       fix="check each source's terms, then prepare again with `--license NAME` once "
           "per source (in the order of --source)",
       targets=(("data",),))
def licenses_declared(targets: Targets, on: str) -> Outcome:
    path = targets.data / "manifest.json"
    manifest = read_json(path, "a data folder written by `prepare`")
    sources, warnings = manifest.get("sources", []), manifest.get("warnings", [])
    findings = [Finding(w, path, line_of(path, w[:40])) for w in warnings]
    findings += [Finding(f"source {s['id']!r} has no declared licence", path,
                         line_of(path, f'"id": "{s["id"]}"'))
                 for s in sources if s.get("license") == "unknown"
                 and not any(repr(s["id"]) in w for w in warnings)]
    licences = sorted({str(s.get("license")) for s in sources})
    return Outcome(f"{len(sources)} source(s), licences: "
                   f"{', '.join(licences)}", findings)


def manifest_differences(a: dict, b: dict) -> list[str]:
    """The top-level fields (and outputs) in which two data manifests differ."""
    diffs = [k for k in sorted(a.keys() | b.keys())
             if k != "outputs_sha256" and a.get(k) != b.get(k)]
    outputs_a, outputs_b = a.get("outputs_sha256", {}), b.get("outputs_sha256", {})
    diffs += [f"outputs_sha256[{name}]" for name in sorted(outputs_a.keys()
              | outputs_b.keys()) if outputs_a.get(name) != outputs_b.get(name)]
    return diffs


def rerun_prepare(manifest: dict, out: Path, workers: int) -> dict:
    """Prepare again from the settings a manifest recorded; return the new manifest."""
    settings = {k: tuple(v) if isinstance(v, list) else v
                for k, v in manifest["settings"].items()}
    prepare(PrepareSettings(**settings), out, workers=workers)
    return read_json(out / "manifest.json", "a data folder")


@check("data.reproducible-manifest",
       verifies="preparing the same inputs again gives a byte-identical manifest.json "
                "(same sources, cleaning counts, tools and output hashes)",
       why="a data folder nobody can rebuild cannot be audited later: the manifest is "
           "only evidence if the recorded inputs really produce it",
       fix="pin what varies (a URL source by --sha256, the tool versions, the seed) "
           "and prepare again; the listed fields show what changed. Re-runs prepare "
           "unless --compare-data names a second folder prepared from the same inputs",
       targets=(("data",),))
def reproducible_manifest(targets: Targets, on: str) -> Outcome:
    path = targets.data / "manifest.json"
    manifest = read_json(path, "a data folder written by `prepare`")
    if targets.compare_data is not None:
        other_path = targets.compare_data / "manifest.json"
        other = read_json(other_path, "a data folder written by `prepare`")
        how = f"compared with {other_path}"
    else:
        with tempfile.TemporaryDirectory(prefix="audit-prepare-") as tmp:
            other = rerun_prepare(manifest, Path(tmp), targets.workers)
        how = "prepared again from the recorded settings"
    diffs = manifest_differences(manifest, other)
    findings = [Finding(f"{how}: {d} differs", path,
                        line_of(path, f'"{d.split("[")[0]}"')) for d in diffs]
    return Outcome(f"{how}: " + ("identical" if not diffs else
                                 f"{len(diffs)} field(s) differ"), findings)
