"""Errors that end a run with one clear message (the CLI prints them without a traceback)."""


class RunStopped(RuntimeError):
    """The run cannot go on (repeated NaN updates, a worker that keeps dying)."""
