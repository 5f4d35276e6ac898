"""Named corpora: where each comes from, its licence, citation, pin and size.

`prepare --source NAME` expands a recipe into the sources and settings below. A
recipe is pinned so that the same command reads the same bytes later: a URL by the
sha256 of its file, a Hub dataset by a commit (`--revision` picks another one).

Prose recipes turn the quality filters on (filters.py); code and verse do not pass
prose heuristics, so theirs stay off. With `--tokens`, a large recipe is read only
as far as needed: `prepare --source fineweb-edu --tokens 5B` fetches
the first parquet files of the sample, not all of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import UserError


@dataclass(frozen=True)
class Recipe:
    """One named corpus."""

    name: str
    source: str  # a --source value: stdlib, a URL or hf:ORG/NAME:GLOB
    license: str  # SPDX identifier (LicenseRef-… where SPDX has none)
    citation: str
    size: str  # what to expect, to plan disk and time
    prose: bool  # run the quality filters
    sha256: str | None = None  # the pin of a URL
    revision: str | None = None  # the pin of a Hub dataset: a commit
    separator: str | None = None  # cuts a plain text file into documents
    tokens: int | None = None  # about how many GPT-2 tokens it holds (the planner)


RECIPES = {r.name: r for r in [
    Recipe("stdlib", "stdlib", "PSF-2.0",
           "The Python standard library of the running interpreter (python.org)",
           "about 30 MB of code and prose, offline", prose=False),
    Recipe("tinyshakespeare",
           "https://raw.githubusercontent.com/karpathy/char-rnn/"
           "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare/input.txt",
           "LicenseRef-public-domain",
           "Karpathy, The Unreasonable Effectiveness of Recurrent Neural Networks "
           "(2015), char-rnn",
           "1,115,394 bytes; one document per speech (blank-line separated)",
           prose=False,
           sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
           separator="\n\n"),
    Recipe("tinystories", "hf:roneneldan/TinyStories:TinyStoriesV2-GPT4-train.txt",
           "CDLA-Sharing-1.0",
           "Eldan and Li, TinyStories: How Small Can Language Models Be and Still "
           "Speak Coherent English? (2023), arXiv:2305.07759",
           "2.2 GB of text, about 2.7M stories, about 0.6B GPT-2 tokens",
           prose=True, separator="<|endoftext|>", tokens=600_000_000,
           # the commit that public projects pin for TinyStoriesV2-GPT4-train.txt
           # (huggingface.co/datasets/roneneldan/TinyStories/tree/f54c09fd…)
           revision="f54c09fd23315a6f9c86f9dc80f725de7d8f9c64"),
    Recipe("fineweb-edu", "hf:HuggingFaceFW/fineweb-edu:sample/10BT/*.parquet",
           "ODC-By-1.0",
           "Lozhkov, Ben Allal, von Werra and Wolf, FineWeb-Edu (2024), "
           "huggingface.co/datasets/HuggingFaceFW/fineweb-edu",
           "the sample-10BT config: about 10B GPT-2 tokens in parquet files of "
           "about 2 GB each; --tokens reads only the first ones", prose=True,
           tokens=10_000_000_000,
           # the commit that public projects pin for sample/10BT/*.parquet
           # (huggingface.co/datasets/HuggingFaceFW/fineweb-edu/tree/87f09149…)
           revision="87f09149ef4734204d70ed1d046ddc9ca3f2b8f9"),
]}


def expand(settings):
    """`settings` with a recipe name in `sources` replaced by what it stands for.

    `settings` is a `data.PrepareSettings`; only the fields a recipe decides
    change, and only where the user left them at their defaults."""
    names = [s for s in settings.sources if s in RECIPES and s != "stdlib"]
    if not names:
        return settings
    if len(settings.sources) > 1:
        raise UserError(f"recipe {names[0]} is a whole corpus: pass it as the only "
                        "--source (prepare other sources into their own folders "
                        "and mix them with train.data_mix)")
    recipe = RECIPES[names[0]]
    revision = settings.revision or recipe.revision
    return dataclasses.replace(
        settings, sources=(recipe.source,), licenses=(recipe.license,),
        sha256s=(recipe.sha256,) if recipe.sha256 else (), revision=revision,
        separator=settings.separator or recipe.separator,
        quality_filters=(recipe.prose if settings.quality_filters is None
                         else settings.quality_filters))
