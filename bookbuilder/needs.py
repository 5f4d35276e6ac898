"""What an experiment sees of the experiments it needs (`BOOK['needs']`).

The builder runs a needed experiment first and tells the kernel where its files are,
in the environment variable BOOK_NEEDS (a JSON object, name -> folder). This module
is the experiment's side of that: it uses the standard library only, so importing it
costs nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import BuildError


def folder(name: str) -> Path:
    """The `files/` folder that the needed experiment `name` wrote: read it, and copy
    what you change (it is the cache, shared by every experiment that needs it)."""
    needs = json.loads(os.environ.get("BOOK_NEEDS") or "{}")
    if name not in needs:
        raise BuildError(f"experiment needs {name!r} but BOOK['needs'] does not name "
                         f"it (it names: {', '.join(needs) or 'nothing'}); add "
                         f"\"needs\": [{name!r}] to the experiment's BOOK header")
    return Path(needs[name])
