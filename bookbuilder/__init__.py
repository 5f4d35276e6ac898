"""The book builder: `python build.py` (or `python -m bookbuilder`) turns book/ into
executed, clickable PDFs.

The pipeline, one module per step:

- `roadmap`  loads and validates book/roadmap.toml (ids, inputs, lanes, files,
             symbols, tracks)
- `estimates` the numbers of each node's estimate card, from the planner
- `snippets` quotes reference code by symbol, found with `ast` (no import)
- `execute`  runs the experiments as notebooks, cached by their inputs
- `layout`   lays out the roadmap in lifecycle lanes: rows, routed edges, critical path
- `graph`    the laid-out roadmap as plain data, for the PDF's drawing and the web's
- `render`   renders chapters and templates (Jinja2 with Typst-safe delimiters)
- `pdf`      compiles the rendered Typst to PDF, mapping errors back to source lines
- `pipeline` ties the steps together and writes the PDFs and the manifest
"""
