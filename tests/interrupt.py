"""Test helper: make a model's training_step do something (raise, send a signal) at one step."""

from __future__ import annotations


def at_step(model, step: int, action) -> None:
    """Call ``action()`` when ``training_step`` reaches ``step`` (before that step runs), then go on."""
    original = model.training_step

    def wrapped(batch, s, opt):
        if s == step:
            action()
        return original(batch, s, opt)

    model.training_step = wrapped


def crash_at(model, step: int) -> None:
    """Raise KeyboardInterrupt at ``step``: a kill between two checkpoints, without a signal handler."""

    def crash():
        raise KeyboardInterrupt

    at_step(model, step, crash)
