"""The step runner: a piece of work on a clone is a table of small steps, `verb_noun(ctx)`, run by one loop.

Phase 1 (restore or copy by blocks), Phase 2 (customize), Phase 3 (finalize) and `alt cleanup --wipe` each have a
context that derives from `Context` and a tuple of `Step`s. `run_phase` opens what the steps work on (the clone,
through a `Guest`: the libguestfs appliance today), runs each step in order, times it, names it in -D output,
calls the fault hook before it (faults.py: a test kills the run there), and tells the caller of each finished step.
A step that fails stops the run; what it leaves is the caller's to clean up.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from imgclone import faults
from imgclone.guest.interface import Guest

log = logging.getLogger("imgclone")


@dataclass
class Context:
    """What a phase's steps share: its targets, the clone being worked on while the phase runs, what they did."""

    targets: tuple[str, ...]
    guest: Guest | None = None
    actions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def g(self) -> Guest:
        """The clone, while the phase runs."""
        assert self.guest is not None, "a step ran outside run_phase"
        return self.guest


C = TypeVar("C", bound=Context)


@dataclass(frozen=True)
class Step(Generic[C]):
    """One step of a phase: a function of the phase's context, named by its function's name."""

    run: Callable[[C], None]

    @property
    def name(self) -> str:
        return self.run.__name__


def steps(*functions: Callable[[C], None]) -> tuple[Step[C], ...]:
    """A phase's table, in order."""
    return tuple(Step(f) for f in functions)


def step_names(table: Sequence[Step[C]]) -> list[str]:
    return [s.name for s in table]


def run_steps(label: str, ctx: C, table: Sequence[Step[C]],
              done: Callable[[C, Step[C]], None] | None = None) -> None:  # fmt: skip
    """Each step in order: the fault hook (at "<label>:<step>"), the step, its time in ctx.timings; `done` after
    each one."""
    for step in table:
        t0 = time.monotonic()
        log.debug("step %s", step.name)
        faults.maybe_fail(label, step.name)
        step.run(ctx)
        ctx.timings[step.name] = round(time.monotonic() - t0, 1)
        if done is not None:
            done(ctx, step)


def run_phase(label: str, ctx: C, table: Sequence[Step[C]], opened: contextlib.AbstractContextManager[Guest],
              done: Callable[[C, Step[C]], None] | None = None) -> C:  # fmt: skip
    """Open the clone (`opened` gives it), run the phase's steps on it, let it go; returns ctx."""
    with opened as g:
        ctx.guest = g
        try:
            run_steps(label, ctx, table, done)
        finally:
            ctx.guest = None
    return ctx
