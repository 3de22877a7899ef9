"""User-facing errors.

Anything a user can cause (bad paths, bad manifests, impossible episode shapes)
raises ``FewtaskError`` with a one-line message saying what is wrong and how to
fix it. The CLIs print that line and exit with status 2 instead of a traceback.
"""


class FewtaskError(Exception):
    """An error caused by the user's input; its message is shown as is."""
