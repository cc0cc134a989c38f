"""What a restore is asked to do: the phases to run and each phase's options.

cli/ builds a RestoreRequest from the command line (restore, and copy's later phases); command.py runs it. Nothing
here knows of argparse: a request is plain, frozen data, so a caller (the CLI, a test, an Ansible module) says the
same thing the same way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from imgclone.phases.customize import CustomizeOptions
from imgclone.phases.phase import Phase
from imgclone.phases.restore import RestoreOptions


@dataclass(frozen=True)
class FinalizeOptions:
    """Phase 3's flags."""

    skip_checks: bool = False  # -g: no bootability checks
    beside_source: bool = False  # --beside-source: keep altinst_<vg> until the clone's first boot


@dataclass(frozen=True)
class BootOrderOptions:
    """After Phase 3 (AIX's bootlist)."""

    leave: bool = False  # -B: the boot order is left alone
    reboot: bool = False  # -r: reboot into the clone at the end


@dataclass(frozen=True)
class RestoreRequest:
    """The phases to run on the targets (restore.targets) and their options."""

    phases: frozenset[Phase]
    restore: RestoreOptions  # Phase 1, and the targets every phase works on
    customize: CustomizeOptions = field(default_factory=CustomizeOptions)
    finalize: FinalizeOptions = field(default_factory=FinalizeOptions)
    boot: BootOrderOptions = field(default_factory=BootOrderOptions)

    @property
    def targets(self) -> tuple[str, ...]:
        return self.restore.targets

    @property
    def debug(self) -> bool:
        return self.restore.debug

    def only(self, *phases: Phase) -> RestoreRequest:
        """The same request for those of `phases` it asks for (copy runs Phase 1, then the others)."""
        return dataclasses.replace(self, phases=self.phases & frozenset(phases))
