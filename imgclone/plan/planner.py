"""Planning a restore: from the archive's source layout and the target disks, the exact target layout.

make_plan() is pure; the executor creates exactly what Plan.target says. Placement:
- Target 0 gets, in the source's order (disk by disk, partitions by start), every source partition that is not a
  physical volume (bios_grub, ESP, /boot, plain filesystem and swap partitions, partitions holding nothing) and
  every filesystem or swap on a whole source disk (as a partition of its own), then one LVM partition per volume
  group, in the source's order.
- Every further target gets one LVM partition over the whole disk: a physical volume of the VG holding "/" (or of
  the first VG), so a VG may span several disks. Without any VG an extra target is an error.
- A source of several disks is not mirrored disk for disk, even onto as many targets: the rules above hold
  (simple, predictable). Only a layout file (-i) places VGs: a VG whose PVs sit on its disk k ≥ 1 gets a PV on
  target k if there is one (else on target 0); a target holding such PVs does not also join the root VG.
- The partition table is source disk 0's type (msdos for a filesystem or PV on a whole disk). With more than 4
  partitions on msdos, 1-3 are primary and the rest logical (5, 6, …), each starting 1 MiB after the previous
  end (room for its EBR); the executor makes extended partition 4 from 1 MiB before 5 to the end of the last.

Sizes, in bytes: partitions are 1 MiB-aligned from 1 MiB; GPT keeps the last MiB for its backup table; a PV's
first extent is 1 MiB in (LVM's default pe_start): a PV partition of S bytes holds (S - 1 MiB) // extent extents.
- EXACT: partitions, LVs and filesystems keep their source sizes (rounded up to 1 MiB / extents); each VG gets room
  for its LVs and, on target 0, up to its source size when the disk has room (a same-size disk reproduces it).
- GROW: EXACT's sizes are minimums; on target 0 the root VG's PV (or the last PV, or without LVM the last non-vfat
  filesystem partition) takes the rest of the disk, on further targets the last partition does; the LVs holding
  filesystems then grow in proportion to fill their VG (swap and empty LVs keep their size; rounded down).
- FIT: each filesystem gets space.required_bytes() of its target type (used + overhead + 10 %, at least the type's
  minimum); vfat, ESP/bios_grub partitions and swap keep their size; sizes edited in a layout file are kept; the
  rest stays free (a warning says how much).
- Default: GROW when growing would give some VG or partition more than its source size, else EXACT.
- A VG's PV takes the VG's remaining need; when the VG continues on later targets, at most what its disk has left.
- Images of size 0 get --size, else the smallest size that holds the plan (plus the GPT reserve).

Layout file (-i): validated, then checked against the archive: the same filesystem ids, types and mount points
(types change with --convert). Its names and partition/LV sizes are used; `used` comes from the archive; a
filesystem's own size field is ignored (it is its device's size).

Target objects: disks disk-t<i>, partitions part-t<i>-<n>; VG, LV, filesystem and swap ids are the source's (the
executor maps archive streams by filesystem id). All uuids are empty: the executor makes new ones; with
--keep-uuids the caller copies the source's uuids (same ids) into the target it passes on.
"""

from __future__ import annotations

from collections.abc import Sequence

from imgclone.errors import LayoutError, UsageError
from imgclone.fs import limits, space
from imgclone.model import names
from imgclone.model.layout import Layout
from imgclone.plan.placement import place
from imgclone.plan.report import plan_rows, plan_warnings
from imgclone.plan.sizes import allocate, capacities, choose_policy, lv_extents, minimums, target_rooms
from imgclone.plan.source import planning_source
from imgclone.plan.target import build_target, table_type
from imgclone.plan.types import Plan, PlanOptions, Target
from imgclone.units import MiB


def _check_args(source: Layout, targets: Sequence[Target], opts: PlanOptions) -> None:
    if not source.disks:
        raise LayoutError("the source layout has no disks")
    if not targets:
        raise UsageError("no target disks (-d)")
    paths = [t.path for t in targets]
    if len(set(paths)) < len(paths):
        raise UsageError(f"target {next(p for p in paths if paths.count(p) > 1)} is given more than once")
    for t in targets:
        if t.size < 0 or t.sector_size < 512 or t.sector_size & (t.sector_size - 1):
            raise UsageError(f"target {t.path}: size {t.size} or sector size {t.sector_size} is not valid")
    if opts.size is not None and opts.size < 2 * MiB:
        raise UsageError(f"--size {opts.size}: an image needs at least 2 MiB")
    names.check_limit(opts.lv_name_limit)


def make_plan(source: Layout, targets: Sequence[Target], opts: PlanOptions | None = None) -> Plan:
    """The target layout for restoring source (or opts.edited) onto targets; pure; LayoutError/UsageError."""
    opts = opts or PlanOptions()
    _check_args(source, targets, opts)
    src = planning_source(source, opts)
    slots = place(src, targets, honour=opts.edited is not None)
    disks = target_rooms(targets, slots, table_type(src.layout), opts)
    policy = choose_policy(src, slots, disks, opts)
    mins = minimums(src, slots, policy, opts.files)
    sizes = allocate(src, slots, mins, disks, policy)
    extents = lv_extents(src, mins, capacities(src, slots, sizes), policy)
    target, warnings = build_target(src, slots, sizes, disks, extents, opts.snapshots)
    names.check_names(target, limit=opts.lv_name_limit)
    old = {f.id: str(f.type) for f in src.layout.filesystems}
    problems = space.minimum_problems(target, old)
    if problems:
        raise LayoutError("; ".join(problems) + "; use --resize fit or grow with a larger target, or do not convert")
    problems = limits.content_problems(target, opts.content, old)
    if problems:
        raise LayoutError("; ".join(problems))
    problems = [] if opts.skip_space_check else space.space_problems(target, old, opts.files)
    if problems:
        raise LayoutError("; ".join(problems) + "; use a larger target, --resize fit, or -S to skip this check")
    target.validate()
    warnings += plan_warnings(src, target, policy, targets, opts)
    rows = plan_rows(src, target, slots, opts.edited is not None, opts.files)
    return Plan(src.layout, target, rows, tuple(warnings), tuple(d.size for d in target.disks), policy)
