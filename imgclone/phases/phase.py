"""The phases: AIX's three, by their -P digit, and their order. Each phase is a table of steps (STEPS in
restore.py, customize.py, finalize.py; copy/blocks.py for Phase 1 by blocks) run by guest/steps.py's runner,
labelled with the phase's digit (the fault hook's "1:partition"). What a failed phase leaves is its caller's to
clean up: Phase 1 removes or blanks its targets; Phases 2 and 3 can run again.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from imgclone.errors import UsageError


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
