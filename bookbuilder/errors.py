"""The builder's one error type: a mistake in the book's sources an author can fix."""

from llm_reference.errors import UserError


class BuildError(UserError):
    """A one-line message naming the file (and line) at fault; build.py exits with 2.

    Failures that carry a traceback (a failing experiment) put it after the first line.
    """
