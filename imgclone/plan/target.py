"""The target layout: disks and partitions from the slots and their sizes, VGs and LVs under their new names,
filesystems converted to their target types, swaps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from imgclone.fs import space
from imgclone.model import names, parttypes
from imgclone.model.layout import Disk, Layout, PartFlag, Partition, TableType
from imgclone.plan.placement import Slot
from imgclone.plan.sizes import Room
from imgclone.plan.source import PlanSource
from imgclone.units import MiB


def _partition(src: PlanSource, s: Slot, t: int, number: int, start: int, size: int, table: TableType) -> Partition:
    if s.kind == "pv":  # flags of the VG's first source PV (on target 0 only: a boot flag stays on the first disk)
        model = next((p for p in src.layout.partitions if p.id in src.vg(s.ref).pvs), None)
        flags: tuple[PartFlag, ...] = (*(model.flags if model and t == 0 else ()), PartFlag.LVM)
        flags = tuple(dict.fromkeys(flags))
    else:
        o = src.layout.get(s.ref)
        model = o if isinstance(o, Partition) else None
        flags = model.flags if model else ((PartFlag.SWAP,) if s.ref in src.swap_on else ())
    name, type_uuid = (model.name, model.type_uuid) if model and table == TableType.GPT else ("", "")
    if table == TableType.GPT and not type_uuid:
        type_uuid = parttypes.gpt_type(flags) or parttypes.GPT_LINUX_DATA
    return Partition(f"part-t{t}-{number}", f"disk-t{t}", number, start, size, flags, name, "", type_uuid)


def _build_disks(
    src: PlanSource, slots: list[list[Slot]], sizes: list[list[int]], disks: list[Room], table: TableType
) -> tuple[list[Disk], list[Partition], dict[str, str], dict[str, list[str]]]:
    """Target disks and partitions; where each source partition/disk went; each VG's target PVs."""
    out, parts, where = [], [], {}
    pvs: dict[str, list[str]] = {vg.id: [] for vg in src.layout.vgs}
    for t, (row, row_sizes, disk) in enumerate(zip(slots, sizes, disks, strict=True)):
        start = MiB
        for i, (s, size) in enumerate(zip(row, row_sizes, strict=True)):
            logical = disk.gaps > 0 and i >= 3
            start += MiB if logical else 0
            p = _partition(src, s, t, i + 2 if logical else i + 1, start, size, table)
            parts.append(p)
            if s.kind == "pv":
                pvs[s.ref].append(p.id)
            else:
                where[s.ref] = p.id
            start += size
        end = disk.target.size or (disk.end + disk.reserve if disk.end is not None else start + disk.reserve)
        out.append(Disk(f"disk-t{t}", disk.target.path, end, table, disk.target.sector_size))
    return out, parts, where, pvs


def build_target(
    src: PlanSource,
    slots: list[list[Slot]],
    sizes: list[list[int]],
    disks: list[Room],
    lv_extents: Mapping[str, int],
    snapshots: bool = False,
) -> tuple[Layout, list[str]]:
    """The target layout, and the warnings of its filesystems' conversions. Its subvolumes are the source's, less
    the snapshots unless the archive holds them."""
    tdisks, parts, where, pvs = _build_disks(src, slots, sizes, disks, table_type(src.layout))
    vgs = tuple(replace(vg, name=names.alt_vg(vg.name), pvs=tuple(pvs[vg.id]), uuid="") for vg in src.layout.vgs)
    lvs = tuple(
        replace(lv, name=names.alt_lv(lv.name), size=lv_extents[lv.id] * src.vg(lv.vg).extent_size, uuid="")
        for lv in src.layout.lvs
    )
    size_of = {p.id: p.size for p in parts} | {lv.id: lv.size for lv in lvs}
    used = [f.device for f in src.layout.filesystems] + [w.device for w in src.layout.swaps]
    dev = {d: where.get(d, d) for d in used}
    made = [
        space.convert_filesystem(f, src.conv[f.id], dev[f.device], size_of[dev[f.device]])
        for f in src.layout.filesystems
    ]
    swaps = tuple(replace(w, device=dev[w.device], size=size_of[dev[w.device]], uuid="") for w in src.layout.swaps)
    subs = tuple(s for s in src.layout.subvolumes if snapshots or not s.snapshot)
    layout = Layout(tuple(tdisks), tuple(parts), vgs, lvs, tuple(f for f, _ in made), swaps, subs)
    return layout, [w for _, ws in made for w in ws]


def table_type(source: Layout) -> TableType:
    """The targets' partition table: source disk 0's, msdos when it has none."""
    first = source.disks[0].table
    return TableType.MSDOS if first == TableType.NONE else first
