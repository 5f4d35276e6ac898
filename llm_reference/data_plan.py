"""Which corpus a plan trains on, how many tokens to prepare, and the command.

A compute-optimal plan asks for D training tokens (about 20 per parameter). The
offline stdlib corpus holds ~3M of them; `choose_recipe` decides when that is
enough and when a larger corpus is needed, and `plan_data` writes the `prepare`
command that makes it. No torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .hardware import CALIBRATION
from .recipes import RECIPES

MAX_EPOCHS = 4  # passes over the same tokens before repeating stops paying
VAL_FRACTION = 0.05  # prepare's default --val-fraction: the documents held out


@dataclass(frozen=True)
class DataPlan:
    """The corpus a plan trains on and the command that prepares it."""

    recipe: str  # a name in recipes.RECIPES
    tokens: int  # to prepare: the train split and the validation share beside it
    epochs: float  # passes the plan's training tokens make over the train split
    out: str  # the folder, the plan's train.data_dir
    command: str


def choose_recipe(tokens: int, device: str) -> str:
    """The corpus for `tokens` training tokens: the stdlib while they fit in
    MAX_EPOCHS passes over it, else FineWeb-Edu on GPUs.

    Chinchilla's D = 20 N counts unique tokens. Muennighoff et al. 2023 (Scaling
    Data-Constrained Language Models) trained on repeated data: up to about 4
    epochs a repeated token is worth almost a new one; beyond, its value decays
    fast, and at ~40 epochs it adds nothing. So a budget that would read the
    3M-token stdlib corpus more than 4 times needs a bigger corpus: FineWeb-Edu,
    educational web pages, the kind of text the loss fit was measured on. A CPU
    keeps the stdlib (offline, prepared in a minute) and the plan warns: fetching
    and encoding a web corpus is the GPU tracks' work.
    """
    stdlib = CALIBRATION["default_corpus"]["tokens"] * (1 - VAL_FRACTION)
    if tokens <= MAX_EPOCHS * stdlib or device != "cuda":
        return "stdlib"
    return "fineweb-edu"


def plan_data(tokens: int, vocab_size: int, device: str) -> DataPlan:
    """What to prepare for `tokens` training tokens at this vocabulary size.

    `prepare --tokens N` reads until the train split holds N tokens, and holds
    out about VAL_FRACTION of the documents beside them; a recipe smaller than N
    is read whole and trained on for several epochs."""
    name = choose_recipe(tokens, device)
    out = "data/" + name + ("" if vocab_size == 8192 else f"-{vocab_size // 1024}k")
    head = f"python -m llm_reference prepare --source {name}"
    tail = f"--vocab-size {vocab_size} --out {out}"
    if name == "stdlib":  # the whole corpus; token counts measured at vocab 8192
        total = CALIBRATION["default_corpus"]["tokens"]
        return DataPlan(name, total, tokens / (total * (1 - VAL_FRACTION)), out,
                        f"{head} {tail}")
    recipe = RECIPES[name]
    train = min(round_up(tokens), recipe.tokens)
    return DataPlan(name, round(train / (1 - VAL_FRACTION)), tokens / train, out,
                    f"{head} --revision {recipe.revision or 'COMMIT'} --tokens "
                    f"{count_arg(train)} --encoder hf {tail}")


def round_up(n: float) -> int:
    """n rounded up to two significant digits: 5270142976 -> 5300000000."""
    step = 10 ** max(0, len(str(math.ceil(n))) - 2)
    return math.ceil(n / step) * step


def count_arg(n: int) -> str:
    """A count as `prepare --tokens` reads it, exactly: 5300000000 -> '5300M'."""
    for unit, size in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def fmt_epochs(epochs: float) -> str:
    """2.63 -> '2.6 epochs', 13.2 -> '13 epochs'."""
    return f"{epochs:,.{1 if epochs < 10 else 0}f} epochs"


def data_notes(data: DataPlan, tokens: int) -> list[str]:
    """The data's command, its licence and pin, and the epochs warning."""
    recipe = RECIPES[data.recipe]
    notes = [f"prepare the data: `{data.command}` ({recipe.license}; "
             f"{recipe.size})"]
    if "COMMIT" in data.command:
        dataset = recipe.source[3:].partition(":")[0]
        notes.append(f"COMMIT: a commit hash from the history of {dataset} on the "
                     "Hub, so that the same command reads the same bytes later")
    if data.recipe == "stdlib":
        notes.append("the expected loss is fitted on web text; it does not "
                     "describe the stdlib's code and docs")
    if data.epochs > MAX_EPOCHS:
        more = ("prepare more text, e.g. `prepare --source fineweb-edu "
                f"--tokens {count_arg(round_up(tokens))} "
                "--encoder hf`"
                if data.recipe == "stdlib" else
                "prepare a larger FineWeb-Edu config or mix in other corpora "
                "(train.data_mix)")
        notes.append(f"{fmt_epochs(data.epochs)} of {data.recipe}: beyond "
                     f"~{MAX_EPOCHS} epochs repeated data helps less (Muennighoff "
                     f"et al. 2023); {more}")
    elif data.epochs > 1:
        notes.append(f"{fmt_epochs(data.epochs)} of {data.recipe}: within the "
                     f"~{MAX_EPOCHS} that are nearly as good as new data "
                     "(Muennighoff et al. 2023)")
    return notes
