"""Exceptions the engine raises on purpose; callers map them to messages and exit codes."""


class InputError(ValueError):
    """The image, the scribbles or the options cannot be segmented as given."""


class Cancelled(RuntimeError):
    """The caller's cancel hook asked the engine to stop."""
