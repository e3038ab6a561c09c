"""Helpers shared by test files (fixtures are in conftest.py)."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def learner_spy(orch):
    """Inside the block, every batch the orchestrator sends its learner (`update.remote`) is
    recorded in the yielded list and passed on; the real learner is put back on exit."""
    learner, sent = orch.learner, []

    class Spy:
        def __getattr__(self, name):
            return getattr(learner, name)

        class update:  # noqa: N801
            @staticmethod
            def remote(batch):
                sent.append(batch)
                return learner.update.remote(batch)

    orch.learner = Spy()
    try:
        yield sent
    finally:
        orch.learner = learner
