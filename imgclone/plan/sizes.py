"""Sizes: each partition's and LV's minimum under a policy, the room of each target, the allocation of partitions
over it (and the error naming a shortfall), the extension into free room, LV extents, and the policy by default."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from imgclone.errors import LayoutError
from imgclone.fs import features as fsfeatures
from imgclone.fs import space
from imgclone.model.layout import Filesystem, FsType, LogicalVolume, LvKind, PartFlag, Partition, TableType
from imgclone.plan.placement import Slot
from imgclone.plan.source import PlanSource
from imgclone.plan.types import PlanOptions, Resize, Target
from imgclone.units import MiB


def _mib(n: int) -> int:
    return -(-n // MiB)


@dataclass(frozen=True)
class Minimums:
    """What each slot and LV needs at least under a policy, and what each VG needs and would like."""

    parts: Mapping[str, int]  # slot ref (source partition or disk) → bytes
    lvs: Mapping[str, int]  # lv id → extents
    need: Mapping[str, int]  # vg id → extents
    pref: Mapping[str, int]  # vg id → extents (EXACT: its source PVs' capacity)


def minimums(src: PlanSource, slots: list[list[Slot]], policy: Resize, files: Mapping[str, int]) -> Minimums:
    """Minimum sizes: the source's (rounded up to MiB and extents), or under FIT what each filesystem requires."""
    fit = policy is Resize.FIT
    parts = {}
    for s in (s for row in slots for s in row if s.kind == "part"):
        size, fs, p = src.size_of(s.ref), src.fs_on.get(s.ref), src.layout.get(s.ref)
        keep = isinstance(p, Partition) and bool({PartFlag.ESP, PartFlag.BIOS_GRUB} & set(p.flags))
        if fit and fs and not keep and fs.type != FsType.VFAT and s.ref not in src.edited:
            size = _required(src, fs, files)
        parts[s.ref] = _mib(size) * MiB
    lvs, need = {}, dict.fromkeys((vg.id for vg in src.layout.vgs), 0)
    for lv in src.layout.lvs:
        size, fs = lv.size, src.fs_on.get(lv.id)
        if fit and fs and lv.id not in src.edited and lv.kind == LvKind.LINEAR:  # thin ones keep their sizes
            size = _required(src, fs, files)
        lvs[lv.id] = -(-size // src.vg(lv.vg).extent_size)
        need[lv.vg] += vg_cost(lv, lvs[lv.id], src.vg(lv.vg).extent_size)
    pref = {
        vg.id: max(need[vg.id], sum(space.pv_extents(src.size_of(pv), vg.extent_size) for pv in vg.pvs))
        for vg in src.layout.vgs
    }
    return Minimums(parts, lvs, need, need if fit else pref)


THIN_METADATA_MIN = 4 * MiB  # the pool metadata LVM gives a small pool when it chooses (lvcreate, lvm2 2.03)


def vg_cost(lv: LogicalVolume, extents: int, extent_size: int) -> int:
    """Extents an LV of `extents` takes from its VG: a thin LV none (its pool holds its data), a thin pool its data
    and twice its metadata (the pool's metadata LV and LVM's spare of it), any other LV its own."""
    if lv.kind == LvKind.THIN:
        return 0
    if lv.kind == LvKind.THIN_POOL:
        return extents + 2 * -(-max(lv.metadata_size, THIN_METADATA_MIN) // extent_size)
    return extents


def _required(src: PlanSource, fs: Filesystem, files: Mapping[str, int]) -> int:
    tgt = src.conv[fs.id]
    made, _ = fsfeatures.carry(fs.type, tgt, fs.features, 0, fs.id)  # the block and inode size mkfs will use
    n = space.files_cost(fs.type, tgt, files.get(fs.id, 0))
    return space.required_bytes(tgt, fs.used, files=n, **fsfeatures.ext_sizes(made))


def _pv_bytes(extents: int, ext: int) -> int:
    return _mib(space.LVM_PE_START + max(1, extents) * ext) * MiB


@dataclass(frozen=True)
class Room:
    """A target's room for partitions: [1 MiB, end); end None = an image the plan sizes."""

    target: Target
    end: int | None
    reserve: int  # bytes kept after end (GPT backup table)
    gaps: int  # bytes before logical partitions (msdos EBRs)


def target_rooms(targets: Sequence[Target], slots: list[list[Slot]], table: TableType, opts: PlanOptions) -> list[Room]:
    """Each target's room: its size (or --size) less the GPT reserve, and the gaps msdos EBRs take."""
    reserve = MiB if table == TableType.GPT else 0
    gaps = [MiB * (len(row) - 3) if table == TableType.MSDOS and len(row) > 4 else 0 for row in slots]
    sizes = [t.size or opts.size or 0 for t in targets]
    made = zip(targets, sizes, gaps, strict=True)
    return [Room(t, size // MiB * MiB - reserve if size else None, reserve, gap) for t, size, gap in made]


def allocate(
    src: PlanSource, slots: list[list[Slot]], mins: Minimums, disks: list[Room], policy: Resize
) -> list[list[int]]:
    """Partition sizes per target and slot; raises LayoutError naming the shortfall."""
    remaining, out = dict(mins.need), []
    for t, (row, disk) in enumerate(zip(slots, disks, strict=True)):
        room = None if disk.end is None else disk.end - MiB - disk.gaps
        sizes = [mins.parts[s.ref] if s.kind == "part" else 0 for s in row]
        for spill in (False, True):  # PVs that must hold their VG's rest first, then those that may spill over
            for i, s in enumerate(row):
                if s.kind == "pv" and s.spills == spill:
                    ext = src.vg(s.ref).extent_size
                    want = _pv_bytes(remaining[s.ref], ext)
                    left = want if room is None or not spill else (room - sum(sizes)) // MiB * MiB
                    sizes[i] = max(_pv_bytes(1, ext), min(want, left))
        if room is not None:
            if sum(sizes) > room:
                short = _mib(sum(sizes) - room)
                has = disk.target.size // MiB if disk.target.size else (disk.end or 0) // MiB + disk.reserve // MiB
                raise LayoutError(
                    f"target {disk.target.path} (disk-t{t}) is too small: the plan needs {has + short} MiB, it has "
                    f"{has} MiB (short by {short} MiB); {_advice(src, policy, len(disks))}"
                )
            _extend(src, t, row, sizes, mins, room - sum(sizes), policy)
        for i, s in enumerate(row):
            if s.kind == "pv":
                remaining[s.ref] -= space.pv_extents(sizes[i], src.vg(s.ref).extent_size)
        out.append(sizes)
    for vg_id, extents in remaining.items():
        if extents > 0:
            vg = src.vg(vg_id)
            short = _mib(extents * vg.extent_size)
            raise LayoutError(
                f"volume group {vg.name} needs {short} MiB more than the targets give it (short by {short} MiB); "
                + _advice(src, policy, len(disks))
            )
    return out


def _advice(src: PlanSource, policy: Resize, n: int) -> str:
    more = "use a larger target or more targets"
    if policy is not Resize.FIT:
        more = "use a larger target, more targets, or --resize fit (shrinks filesystems to their data)"
    if n > 1 and len(src.layout.disks) > 1:
        more += "; without a layout file every VG starts on the first target: -i puts a VG on the target of its disk"
    return more


def _extend(
    src: PlanSource, t: int, row: list[Slot], sizes: list[int], mins: Minimums, left: int, policy: Resize
) -> None:
    """Give target t's free room: EXACT PVs on target 0 up to their source size, then the rest-taker the rest."""
    if t == 0 and policy is Resize.EXACT:
        for i, s in enumerate(row):
            if s.kind == "pv":
                grow = min(left, max(0, _pv_bytes(mins.pref[s.ref], src.vg(s.ref).extent_size) - sizes[i]))
                sizes[i], left = sizes[i] + grow, left - grow
    rest = _rest_taker(src, t, row, policy)
    if rest is not None:
        sizes[rest] += left


def _rest_taker(src: PlanSource, t: int, row: list[Slot], policy: Resize) -> int | None:
    if t > 0:
        return len(row) - 1
    if policy is not Resize.GROW:
        return None
    pvs = [i for i, s in enumerate(row) if s.kind == "pv"]
    root = [i for i in pvs if row[i].ref == src.root_vg()]
    fss = [i for i, s in enumerate(row) if s.ref in src.fs_on and src.fs_on[s.ref].type != FsType.VFAT]
    found = root or pvs or fss
    return found[-1] if found else None


def capacities(src: PlanSource, slots: list[list[Slot]], sizes: list[list[int]]) -> dict[str, int]:
    """Extents each VG gets from its PV partitions as sized."""
    caps = dict.fromkeys((vg.id for vg in src.layout.vgs), 0)
    for row, row_sizes in zip(slots, sizes, strict=True):
        for s, size in zip(row, row_sizes, strict=True):
            if s.kind == "pv":
                caps[s.ref] += space.pv_extents(size, src.vg(s.ref).extent_size)
    return caps


def lv_extents(src: PlanSource, mins: Minimums, caps: Mapping[str, int], policy: Resize) -> dict[str, int]:
    """Extents of each LV: the minimums, grown in proportion to fill their VG under GROW."""
    out = dict(mins.lvs)
    if policy is not Resize.GROW:
        return out
    for vg in src.layout.vgs:
        mine = [lv for lv in src.layout.lvs if lv.vg == vg.id]
        growers = [lv.id for lv in mine if lv.id in src.fs_on and lv.kind == LvKind.LINEAR]  # thin: as they were
        used = sum(vg_cost(lv, out[lv.id], vg.extent_size) for lv in mine)
        free, total = caps[vg.id] - used, sum(mins.lvs[i] for i in growers)
        for i in growers if free > 0 and total else ():
            out[i] += free * mins.lvs[i] // total
    return out


def choose_policy(src: PlanSource, slots: list[list[Slot]], disks: list[Room], opts: PlanOptions) -> Resize:
    """The asked policy, else GROW when growing would give something more than its source size."""
    if opts.resize is not None:
        return opts.resize
    mins = minimums(src, slots, Resize.GROW, opts.files)
    sizes = allocate(src, slots, mins, disks, Resize.GROW)
    caps = capacities(src, slots, sizes)
    pairs = (pair for row, z in zip(slots, sizes, strict=True) for pair in zip(row, z, strict=True))
    parts = (size > mins.parts[s.ref] for s, size in pairs if s.kind == "part")
    return Resize.GROW if any(caps[v] > mins.pref[v] for v in caps) or any(parts) else Resize.EXACT
