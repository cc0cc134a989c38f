"""alt cleanup: forget an alternate, and with --wipe return its recorded targets to blank disks.

The wipe runs through one appliance holding only the recorded targets, as a table of steps (guest/steps.py):
check that they still hold this alternate, remove its volume groups and PVs, wipe every partition's and disk's
signatures, and check that restore would take them again without --force. Phase 1 uses it too, when it fails under
ALT_BAK_ERR_FAIL=1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from imgclone.alt.alternates import Alternate, find, refuse_missing, refuse_woken
from imgclone.errors import GuestfsError, ImgcloneError
from imgclone.guest.appliance import Appliance
from imgclone.guest.interface import Guest
from imgclone.guest.steps import Context, run_phase, steps
from imgclone.model import journal as state
from imgclone.model import names
from imgclone.storage import build

log = logging.getLogger("imgclone")


@dataclass(kw_only=True)
class Wipe(Context):
    """One cleanup --wipe: the alternate and its targets' devices in the appliance."""

    alt: Alternate
    devs: build.Devices | None = None

    @property
    def devices(self) -> build.Devices:
        """Layout ids → the appliance's device names (its drives are the recorded targets, in order)."""
        if self.devs is None:
            listed = self.g.list_devices()
            self.devs = build.Devices(self.alt.layout, {d.id: listed[i] for i, d in enumerate(self.alt.layout.disks)})
        return self.devs


def cleanup(targets: Sequence[str], *, wipe: bool = False, debug: bool = False,
            make_guest: Callable[[], Appliance] | None = None) -> list[str]:  # fmt: skip
    """Forget the alternate (its journal); with wipe, first blank its recorded targets. Returns what was done."""
    alt = find(targets)
    refuse_woken(alt, "cleanup")
    actions: list[str] = []
    if wipe:
        refuse_missing(alt, "cleanup --wipe")
        actions += wipe_targets(alt, make_guest() if make_guest else Appliance(trace=debug))
    else:
        vgs = ", ".join(vg.name for vg in alt.layout.vgs)
        if vgs and len(alt.missing) < len(alt.targets):
            actions.append(f"the targets still hold {vgs} (restore refuses them; --wipe would have blanked them)")
    state.remove(alt.target_paths)
    actions.append(f"forgot the alternate on -d {alt.dflag} (removed {alt.journal})")
    return actions


def wipe_targets(alt: Alternate, g: Appliance) -> list[str]:
    """Through one appliance holding only the recorded targets: remove the VGs and PVs, wipe every signature."""
    for t in alt.targets:
        g.add_drive(t.path, readonly=False, format=t.format)
    ctx = Wipe(targets=tuple(alt.target_paths), alt=alt)
    run_phase("wipe", ctx, STEPS, g)
    return ctx.actions


def _vg_present(ctx: Wipe) -> dict[str, str]:
    """Layout VG id → the name it has on the targets now (either name: a Phase 3 may have stopped half-way)."""
    existing = set(ctx.g.vgs())
    out = {}
    for vg in ctx.alt.layout.vgs:
        final = names.final_name(vg.name) if vg.name.startswith(names.ALT_VG_PREFIX) else vg.name
        found = [n for n in (names.alt_vg(final), final) if n in existing]
        if found:
            out[vg.id] = found[0]
    return out


def check_holds_alternate(ctx: Wipe) -> None:
    """Wipe only targets that still hold this alternate: one of its VGs or of its filesystem UUIDs."""
    if _vg_present(ctx) or not ctx.alt.phases:  # no phase completed: a Phase 1 that died while writing them
        return
    filesystems = ctx.g.list_filesystems()
    for fs in ctx.alt.layout.filesystems:
        dev = ctx.devices.path(fs.device)
        recorded = ctx.alt.uuids.get(fs.id, "")
        if recorded and dev in filesystems and ctx.g.vfs_uuid(dev).lower() == recorded.lower():
            return
    raise ImgcloneError(
        f"cleanup --wipe: -d {ctx.alt.dflag} no longer holds this alternate (none of its volume groups or filesystem "
        "UUIDs found); nothing wiped",
        "alt cleanup without --wipe forgets it; wipefs -a the disks yourself if you are sure",
    )


def remove_volume_groups(ctx: Wipe) -> None:
    """Wipe the LVs' filesystem and swap signatures, then remove each recorded VG with its LVs."""
    g = ctx.g
    present = _vg_present(ctx)
    if not present:
        return
    g.vg_activate(True, list(present.values()))
    lvs = g.lvs()
    for name in present.values():
        for lv in (lv for lv in lvs if lv.startswith(f"/dev/{name}/")):
            g.wipefs(lv)
        g.vgremove(name)
        ctx.actions.append(f"removed volume group {name} and its logical volumes")


def remove_physical_volumes(ctx: Wipe) -> None:
    """pvremove every recorded PV that still carries an LVM label."""
    g = ctx.g
    for pv in (pv for vg in ctx.alt.layout.vgs for pv in vg.pvs):
        dev = ctx.devices.path(pv)
        if _vfs_type(g, dev) == "LVM2_member":
            g.pvremove(dev)
            ctx.actions.append(f"removed physical volume {ctx.alt.device_name(pv)}")


def _vfs_type(g: Guest, dev: str) -> str:
    try:
        return str(g.vfs_type(dev))
    except GuestfsError:
        return ""  # a partition that is gone already, or nothing recognisable


def wipe_partitions(ctx: Wipe) -> None:
    """Filesystem, swap and leftover LVM signatures on every recorded partition."""
    g = ctx.g
    existing = set(g.list_partitions())
    for part in ctx.alt.layout.partitions:
        dev = ctx.devices.path(part.id)
        if dev in existing:
            g.wipefs(dev)
    if ctx.alt.layout.partitions:
        ctx.actions.append(f"wiped the signatures of {len(ctx.alt.layout.partitions)} partition(s)")


def wipe_disks(ctx: Wipe) -> None:
    """The partition tables (GPT: primary, backup and protective MBR) and whole-disk signatures."""
    g = ctx.g
    for i, disk in enumerate(ctx.alt.layout.disks):
        dev = ctx.devices.disks[disk.id]
        g.wipefs(dev)
        g.blockdev_rereadpt(dev)
        ctx.actions.append(f"wiped the partition table and signatures of {ctx.alt.targets[i].path}")


def check_clean(ctx: Wipe) -> None:
    """What restore checks before it writes: no partition table, no signature, no VG."""
    g = ctx.g
    left = [f"volume group {vg}" for vg in g.vgs()]
    filesystems = g.list_filesystems()
    for i, disk in enumerate(ctx.alt.layout.disks):
        dev = ctx.devices.disks[disk.id]
        try:
            left.append(f"a {g.part_get_parttype(dev)} partition table on {ctx.alt.targets[i].path}")
        except GuestfsError:
            pass
        if dev in filesystems and _vfs_type(g, dev) not in ("", "unknown"):
            left.append(f"a {_vfs_type(g, dev)} signature on {ctx.alt.targets[i].path}")
    if left:
        raise ImgcloneError(f"cleanup --wipe: still found {', '.join(left)}", "the journal is kept; run it again")


STEPS = steps(check_holds_alternate, remove_volume_groups, remove_physical_volumes, wipe_partitions, wipe_disks,
              check_clean)  # fmt: skip
