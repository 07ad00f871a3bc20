"""Errors of the server package meant for the user: one line, no traceback."""


class LauncherError(Exception):
    """A problem starting or running Triton, with a message meant for the user (no traceback)."""
