"""Errors a user can fix.

A `UserError` carries a one-line message that names the file, field or value at fault
and says how to fix it. The command line prints it without a traceback and exits with
code 2; any other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input: bad value, missing file, corrupt data."""
