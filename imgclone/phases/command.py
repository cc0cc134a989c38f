"""Running a restore request: Phases 1, 2 and 3 as it asks, on one opened clone (guest/session.py: on this host or
in an appliance, as --via says), then the boot order.

Each finished part is told to a listener as an Outcome (the CLI prints it as it comes, or gathers the JSON).
The targets are locked for the whole run (another imgclone run is refused, naming this one); a caller that
holds the lock and a session already (copy) calls run_held.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from imgclone.guest import session
from imgclone.host import locks
from imgclone.host.targets import TargetDisk
from imgclone.model import journal as state
from imgclone.phases import bootorder
from imgclone.phases.customize import customize
from imgclone.phases.finalize import finalize
from imgclone.phases.phase import Phase
from imgclone.phases.request import RestoreRequest
from imgclone.phases.restore import Restore, restore
from imgclone.plan.types import Plan


@dataclass(frozen=True)
class Via:
    """Where the phases work on the clone (--via), and why: said once, before anything is written."""

    via: str
    reason: str


@dataclass(frozen=True)
class Planned:
    """--dry-run: the plan, nothing written."""

    plan: Plan


@dataclass(frozen=True)
class Restored:
    """Phase 1 built the alternate."""

    plan: Plan
    disks: tuple[TargetDisk, ...]
    uuids: dict[str, str]
    timings: dict[str, float]
    by_blocks: bool  # the source's blocks were copied (copy by blocks), not its files restored


@dataclass(frozen=True)
class Customized:
    """Phase 2 ran (requested: some customization was asked for)."""

    actions: list[str]
    notes: list[str]
    timings: dict[str, float]
    requested: bool = True


@dataclass(frozen=True)
class Finalized:
    """Phase 3 made the clone bootable under its final names."""

    actions: list[str]
    timings: dict[str, float]


@dataclass(frozen=True)
class BootOrder:
    """What was done to the boot order, or what to do; rebooting: -r reboots now."""

    lines: list[str]
    rebooting: bool = False


Outcome = Via | Planned | Restored | Customized | Finalized | BootOrder
Listener = Callable[[Outcome], None]
NO_CUSTOMIZATION = "no customization requested"


def restored(ctx: Restore) -> Restored:
    return Restored(ctx.plan, tuple(ctx.disks), ctx.uuids, ctx.timings, ctx.opts.archive_name == state.BLOCKS)


def run_phases(req: RestoreRequest, listener: Listener, *, read_errors: bool = False) -> None:
    """The request's phases on one opened clone, under the targets' lock (none for a dry run); read_errors: the
    capture feeding Phase 1 could not read some files (ALT_BAK_ERR_REPORT): the boot order is left alone."""
    with contextlib.nullcontext() if req.restore.dry_run else locks.hold(req.targets):
        with session_for(req, listener) as shared:
            run_held(req, listener, shared, read_errors)


def session_for(req: RestoreRequest, listener: Listener) -> session.Session:
    """The command's session: its --via, its choice told to the listener."""
    return session.Session(debug=req.debug, via_asked=req.restore.via,
                           told=lambda choice: listener(Via(choice.via, choice.reason)))  # fmt: skip


def run_held(req: RestoreRequest, listener: Listener, shared: session.Session, read_errors: bool = False) -> None:
    """run_phases for a caller that holds the targets' lock and the session already (copy holds both across its
    two calls)."""
    if Phase.RESTORE in req.phases:
        ctx = restore(req.restore, shared)
        if req.restore.dry_run:
            listener(Planned(ctx.plan))
            return
        listener(restored(ctx))
    if Phase.CUSTOMIZE in req.phases:
        listener(run_customize(req, shared))
    if Phase.FINALIZE in req.phases:
        fin = finalize(req.targets, skip_checks=req.finalize.skip_checks, beside_source=req.finalize.beside_source,
                       debug=req.debug, shared=shared)  # fmt: skip
        listener(Finalized(fin.actions, fin.timings))
        shared.close()  # the clone's disks are let go before the boot order names them and -r reboots
        set_boot_order(req, listener, read_errors)


def run_customize(req: RestoreRequest, shared: session.Session) -> Customized:
    """Phase 2; with nothing asked of it, only journaled as run (`alt query` said "not run: 2" after a whole copy),
    on targets Phase 1 made, as Phase 2 with work to do."""
    if req.customize.requested:
        cus = customize(req.targets, req.customize, debug=req.debug, shared=shared)
        return Customized(cus.actions, cus.notes, cus.timings)
    state.load_alternate(req.targets)
    state.mark_phase(req.targets, "2", state.PhaseRecord(state.now(), notes=(NO_CUSTOMIZATION,)))
    return Customized([], [], {}, requested=False)


def set_boot_order(req: RestoreRequest, listener: Listener, read_errors: bool) -> None:
    """AIX's bootlist after Phase 3: unless -B, or read errors under ALT_BAK_ERR_REPORT; then -r."""
    if req.boot.leave:
        lines = ["boot order: left alone (-B)"]
    elif read_errors:
        lines = ["boot order: not set, files could not be read (ALT_BAK_ERR_REPORT)"]
    else:
        lines = bootorder.set_boot_order(state.load(req.targets) or state.Journal())
    rebooting = req.boot.reboot and not read_errors
    listener(BootOrder(lines, rebooting))
    if rebooting:
        bootorder.reboot()
