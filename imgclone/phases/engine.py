"""The phase engine: a phase is a table of small steps, `verb_noun(ctx)`, run by one loop.

Phase 1 (restore or copy by blocks), Phase 2 (customize) and Phase 3 (finalize) each have a context that derives
from `Context` and a tuple of `Step`s. `run_phase` opens what the phase works on (the clone, through a `Guest`),
runs each step in order, times it, names it in -D output, calls the fault hook before it (faults.py: a test kills
the run there), and reports each finished step to the caller (the journal records the phase's progress). A step
that fails stops the phase; what it leaves is the caller's to clean up (Phase 1 removes or blanks its targets;
Phases 2 and 3 can run again).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from imgclone import faults
from imgclone.errors import UsageError
from imgclone.guest.interface import Guest

log = logging.getLogger("imgclone")


class Phase(StrEnum):
    """AIX's phases of alt_disk_copy, by their -P digit."""

    RESTORE = "1"  # partitions, volume groups, filesystems and every file: the alternate
    CUSTOMIZE = "2"  # packages, scripts, files, device reset: the clone changed offline
    FINALIZE = "3"  # final names, initramfs, boot loader: the clone made bootable

    @property
    def label(self) -> str:
        return f"Phase {self.value}"


PHASE_CHOICES = ("1", "2", "3", "12", "23", "all")  # -P's values


def phases(value: str) -> frozenset[Phase]:
    """-P: 1, 2, 3, 12, 23 or all."""
    if value not in PHASE_CHOICES:
        raise UsageError(f"-P {value}: expected one of {', '.join(PHASE_CHOICES)}")
    return frozenset(Phase) if value == "all" else frozenset(Phase(c) for c in value)


def phases_text(todo: Iterable[Phase]) -> str:
    """The -P value naming these phases (all for the three)."""
    digits = "".join(sorted(p.value for p in todo))
    return "all" if digits == "123" else digits


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


def run_steps(phase: Phase, ctx: C, table: Sequence[Step[C]],
              done: Callable[[C, Step[C]], None] | None = None) -> None:  # fmt: skip
    """Each step in order: the fault hook, the step, its time in ctx.timings; `done` after each one."""
    for step in table:
        t0 = time.monotonic()
        log.debug("step %s", step.name)
        faults.maybe_fail(phase.value, step.name)
        step.run(ctx)
        ctx.timings[step.name] = round(time.monotonic() - t0, 1)
        if done is not None:
            done(ctx, step)


def run_phase(phase: Phase, ctx: C, table: Sequence[Step[C]], opened: contextlib.AbstractContextManager[Guest],
              done: Callable[[C, Step[C]], None] | None = None) -> C:  # fmt: skip
    """Open the clone (`opened` gives it), run the phase's steps on it, let it go; returns ctx."""
    with opened as g:
        ctx.guest = g
        try:
            run_steps(phase, ctx, table, done)
        finally:
            ctx.guest = None
    return ctx
