"""Whether Phase 1 of a copy can go by blocks, and the plan it then builds: pure decisions, nothing run.

`host_refusal` says, before anything is read, why a copy cannot go by blocks; `plan_refusal` says it of the plan
(blocks stay where they are: every partition keeps its number and start, nothing shrinks or changes type);
`as_copied` is the plan as blocks build it. `CopyByFiles` carries either reason: blocks.py removes the image the
copy made and the copy goes by files.
"""

from __future__ import annotations

import dataclasses

from imgclone.capture.common import CaptureOptions
from imgclone.fs.space import LVM_PE_START
from imgclone.host.targets import TargetDisk
from imgclone.model.layout import (
    Disk,
    Filesystem,
    FsType,
    Layout,
    LogicalVolume,
    Partition,
    TableType,
)
from imgclone.phases.restore import RestoreOptions
from imgclone.plan.planner import make_plan
from imgclone.plan.types import Plan, PlanOptions, Resize, Target

PE_START = LVM_PE_START  # the planner's assumption of where a PV's first extent starts (plan/planner.py)
GROWN_TYPES = (FsType.EXT2, FsType.EXT3, FsType.EXT4, FsType.XFS)  # grown in place here; the others keep their size
RENEWED_TYPES = (*GROWN_TYPES, FsType.VFAT)  # given a new UUID in place here (vfat: a new volume id)


class CopyByFiles(Exception):
    """This copy cannot go by blocks; the reason says why, in words for the user."""


def host_refusal(opts: RestoreOptions, cap: CaptureOptions, disks: list[TargetDisk], keep_archive: bool) -> str | None:
    """Why the copy must go by files, from what is known before the source is read (None: blocks may do)."""
    p = opts.plan
    reasons = (
        (cap.source is None, "the source is the running system"),
        (keep_archive, "--archive keeps an archive of files"),
        (opts.via == "host", "--via host restores files (blocks are copied by the appliance)"),
        (bool(cap.exclude_list), "-e excludes files"),
        (bool(p.convert), "a conversion (-T, --convert) rebuilds the filesystems"),
        (p.edited is not None, "-i gives a layout of its own"),
        (p.resize is Resize.FIT, "--resize fit shrinks the filesystems"),
        (len(disks) != 1, "there is more than one target"),
        (len(disks) == 1 and disks[0].exists, "the target exists (blocks go only into an image the copy creates)"),
    )
    return next((why for hit, why in reasons if hit), None)


def plan_refusal(plan: Plan) -> str | None:
    """Why this plan cannot be built from a copy of the source's blocks (None: it can). Blocks stay where they are:
    every partition keeps its number and start, nothing shrinks, a grown object holds something that grows in
    place, and nothing on the disk is left out of the layout (a copy would carry it along)."""
    src, tgt = plan.source, plan.target
    if len(src.disks) != 1 or len(tgt.disks) != 1:
        return "the source has more than one disk"
    if src.disks[0].table != tgt.disks[0].table or src.disks[0].sector_size != tgt.disks[0].sector_size:
        return "the plan changes the partition table"
    if tgt.disks[0].size < src.disks[0].size:
        return "the target is smaller than the source disk"
    by_number = {p.number: p for p in src.partitions}
    if sorted(by_number) != sorted(p.number for p in tgt.partitions):
        return "the plan renumbers the partitions"
    for p in tgt.partitions:
        s = by_number[p.number]
        if p.start != s.start or p.flags != s.flags:
            return f"the plan moves or retypes partition {p.number}"
        if p.size > s.size and (src.disks[0].table is TableType.MSDOS and p.number > 4):
            return f"the plan grows logical partition {p.number}"
    holders = _holders(src)
    for p in src.partitions:
        if p.id not in holders and not ({"bios_grub", "esp"} & {str(f) for f in p.flags}):
            return f"partition {p.number} holds nothing the copy captures"
    for lv in src.lvs:
        if lv.id not in holders:
            return f"LV {lv.name} holds nothing the copy captures"
        if _grown(src, tgt, lv.id) < 0:
            return f"the plan shrinks LV {lv.name}"
    for vg in tgt.vgs:
        if vg.extent_size != getattr(src.get(vg.id), "extent_size", None):
            return f"the plan changes VG {vg.name}'s extent size"
    for fs in tgt.filesystems:
        was = src.get(fs.id)
        assert isinstance(was, Filesystem)
        if fs.type != was.type:
            return f"the plan converts {fs.mountpoint}"
        if device_grows(plan, fs.device) and fs.type not in GROWN_TYPES:
            return f"{fs.mountpoint} ({fs.type}) would have to grow in place"
        if fs.type not in RENEWED_TYPES:
            return f"{fs.mountpoint} ({fs.type}) cannot be given a new UUID in place"
    return None


def as_copied(plan: Plan) -> Plan:
    """The plan as blocks build it: a partition the planner trimmed (a PV's to whole extents) keeps its source
    size, and so does what it holds; the table shows that size too."""
    src = {p.number: p.size for p in plan.source.partitions}
    sizes = {p.id: src[p.number] for p in plan.target.partitions if p.size < src[p.number]}
    if not sizes:
        return plan
    t = plan.target
    target = dataclasses.replace(
        t,
        partitions=tuple(dataclasses.replace(p, size=sizes.get(p.id, p.size)) for p in t.partitions),
        filesystems=tuple(dataclasses.replace(f, size=sizes.get(f.device, f.size)) for f in t.filesystems),
        swaps=tuple(dataclasses.replace(w, size=sizes.get(w.device, w.size)) for w in t.swaps),
    )
    held = {f.id: f.device for f in t.filesystems} | {w.id: w.device for w in t.swaps}
    size = {**{i: sizes[d] for i, d in held.items() if d in sizes}, **sizes}
    rows = tuple(dataclasses.replace(r, target_size=size.get(r.object, r.target_size)) for r in plan.rows)
    return dataclasses.replace(plan, target=target, rows=rows)


def _holders(layout: Layout) -> set[str]:
    """Ids of the partitions, disks and LVs that hold a filesystem, swap or PV of the layout."""
    return (
        {f.device for f in layout.filesystems}
        | {s.device for s in layout.swaps}
        | {pv for vg in layout.vgs for pv in vg.pvs}
    )


def _size(layout: Layout, obj_id: str) -> int:
    obj = layout.get(obj_id)
    assert isinstance(obj, Disk | Partition | LogicalVolume)
    return obj.size


def _grown(src: Layout, tgt: Layout, lv_id: str) -> int:
    return _size(tgt, lv_id) - _size(src, lv_id)


def device_grows(plan: Plan, target_device: str) -> bool:
    """Whether the plan makes the block device under a filesystem or swap bigger than the source's."""
    obj = plan.target.get(target_device)
    if isinstance(obj, Partition):
        src = next(p for p in plan.source.partitions if p.number == obj.number)
        return obj.size > src.size
    if isinstance(obj, LogicalVolume):
        return _grown(plan.source, plan.target, obj.id) > 0
    return isinstance(obj, Disk) and obj.size > plan.source.disks[0].size


def dry_plan(source: Layout, disk: TargetDisk, opts: PlanOptions) -> tuple[Plan | None, str]:
    """copy --dry-run: the plan a copy by blocks would build from the source's layout (its image the source's size,
    or --size), or None and why it would go by files. The copy itself also looks at what the layout does not
    show (plan_copy: LVs it skips, a PV's first extent) and may still go by files."""
    size = opts.size or source.disks[0].size
    if size < source.disks[0].size:
        return None, "--size is smaller than the source disk"
    return blocks_plan(source, Target(disk.path, size, disk.sector_size), opts)


def blocks_plan(source: Layout, target: Target, opts: PlanOptions) -> tuple[Plan | None, str]:
    """make_plan onto a target of its own size (the copy, or the one a copy would make), as blocks build it
    (as_copied), or None and why blocks cannot build it (plan_refusal)."""
    plan = make_plan(source, [target], dataclasses.replace(opts, size=None))
    why = plan_refusal(plan)
    return (as_copied(plan), "") if why is None else (None, why)
