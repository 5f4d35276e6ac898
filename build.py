"""Build the book: `python build.py --help`. The builder is the `bookbuilder` package;
this file is its entry point at the repository's root (the same as
`python -m bookbuilder`)."""

import sys

from bookbuilder.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
