"""Errors that end a run with one clear message (the CLI prints them without a traceback)."""


class RunStopped(RuntimeError):
    """The run cannot go on (repeated NaN updates, a worker that keeps dying)."""


class RunInterrupted(RunStopped):
    """SIGINT/SIGTERM: the step in flight finished and a checkpoint was written."""

    def __init__(self, run_dir, step: int, signal_name: str):
        super().__init__(
            f"{signal_name} at step {step}: checkpoint written; continue with "
            f"`rlscale run --resume {run_dir}`"
        )
