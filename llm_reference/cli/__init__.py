"""The command line of `python -m llm_reference`: one module per command.

Each module here holds one command's parser (`configure_parser(parser)`) and its
`run(args) -> int`, which reads the options, calls the reference modules that teach
the work, and prints the result. The reference modules themselves end at their last
algorithm: no argparse in them. Options that several commands share (`--device`,
`--run`, `--out`, `--force`) are declared once, in `common.py`.
"""
