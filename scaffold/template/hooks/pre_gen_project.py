"""Before cookiecutter writes a file: was this template prepared by the scaffold?

`python -m scaffold new` validates the answers, plans the run and adds the package's
code (copied from llm_reference) to a copy of this template before it calls
cookiecutter. Rendered by plain `cookiecutter`, the template has neither: we stop
with a message that says what to run instead, and cookiecutter removes the folder.
"""

import keyword
import sys

PREPARED = {{ "True" if cookiecutter._scaffold else "False" }}
PACKAGE = {{ cookiecutter.package_name | tojson }}

if not PREPARED:
    sys.exit("error: this template is rendered by `python -m scaffold new` (it adds "
             "the plan and the code); run that instead of cookiecutter")
if not PACKAGE.isidentifier() or keyword.iskeyword(PACKAGE):
    sys.exit(f"error: package name {PACKAGE!r} is not a Python identifier")
