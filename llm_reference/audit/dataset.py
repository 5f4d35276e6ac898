"""Check that the shards a run will read are the ones `prepare` wrote."""

from __future__ import annotations

from ..sources import file_sha256
from .files import line_of, read_json
from .registry import Finding, Outcome, Targets, check


@check("dataset.shard-integrity",
       verifies="the sha256 of every shard and of tokenizer.json equals "
                "manifest.json's `outputs_sha256`, and every shard in meta.json is "
                "in the manifest",
       why="a shard changed after `prepare` (a flipped bit, a partial copy, a file "
           "swapped in) silently trains on data the manifest does not describe",
       fix="copy the folder again from its source, or prepare it again; never edit "
           "shards by hand",
       targets=(("data",),))
def shard_integrity(targets: Targets, on: str) -> Outcome:
    folder = targets.data
    path = folder / "manifest.json"
    recorded = read_json(path, "a data folder written by `prepare`").get(
        "outputs_sha256", {})
    meta = read_json(folder / "meta.json", "a data folder written by `prepare`")
    findings = []
    for name, expected in recorded.items():
        file = folder / name
        if not file.is_file():
            findings.append(Finding(f"{name} is listed in the manifest but missing",
                                    path, line_of(path, f'"{name}"')))
        elif (actual := file_sha256(file)) != expected:
            findings.append(Finding(f"{name}: sha256 {actual[:12]}… differs from the "
                                    f"manifest's {expected[:12]}…", file))
    listed = [s["file"] for split in meta.get("shards", {}).values() for s in split]
    findings += [Finding(f"shard {name} is in meta.json but not in the manifest",
                         folder / "meta.json", line_of(folder / "meta.json", name))
                 for name in listed if name not in recorded]
    return Outcome(f"{len(recorded)} file(s) hashed", findings)
