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

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from imgclone.errors import LayoutError, UsageError
from imgclone.fs import features as fsfeatures
from imgclone.fs import limits, space
from imgclone.model import names, parttypes
from imgclone.model.content import ContentFacts
from imgclone.model.layout import (
    Disk,
    Filesystem,
    FsType,
    Layout,
    LogicalVolume,
    PartFlag,
    Partition,
    Swap,
    TableType,
    VolumeGroup,
)
from imgclone.units import MiB, human

PE_START = space.LVM_PE_START
EXT = frozenset({FsType.EXT2, FsType.EXT3, FsType.EXT4})


class Resize(StrEnum):
    EXACT = "exact"
    FIT = "fit"
    GROW = "grow"


@dataclass(frozen=True)
class Target:
    """One -d argument, already resolved by the caller."""

    path: str  # host path of the image or block device
    size: int  # bytes; 0 = an image to be created, its size decided by the plan
    sector_size: int = 512


@dataclass(frozen=True)
class PlanOptions:
    resize: Resize | None = None  # None: GROW when the targets are larger than needed, else EXACT
    convert: Mapping[str, str] = field(default_factory=dict)  # fs type → fs type (-T: ext2/ext3 → ext4)
    lv_name_limit: int = 127  # 15 = the AIX rule (originals ≤ 11)
    skip_space_check: bool = False  # -S
    size: int | None = None  # --size for images being created
    edited: Layout | None = None  # -i LAYOUT.json, parsed: the user's edited source layout
    # fs id → files in its archive stream (the manifest's `files`): checks ext inode counts, costs xfs/btrfs inodes
    files: Mapping[str, int] = field(default_factory=dict)
    # fs id → its stream's content facts (largest file, most links, largest xattr), checked against each target
    # type's limits; None: the stream records none (an older archive), named in a warning; absent: not known yet
    content: Mapping[str, ContentFacts | None] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanRow:
    """One line of the --dry-run table."""

    object: str
    kind: str
    source_size: int
    target_size: int
    source_type: str
    target_type: str
    source_name: str
    target_name: str
    files: int = 0  # a filesystem's files planned for (PlanOptions.files); 0: not known


@dataclass(frozen=True)
class Plan:
    source: Layout  # the layout planned from: the archive's, or the -i layout (with the archive's `used`)
    target: Layout
    rows: tuple[PlanRow, ...]
    warnings: tuple[str, ...]
    target_sizes: tuple[int, ...]  # final size of each target, in -d order
    resize: Resize = Resize.EXACT  # the policy applied

    def table(self) -> str:
        """The --dry-run table: object, size source → target, type change, name change (human sizes), files."""
        head = ("OBJECT", "KIND", "SIZE", "TYPE", "NAME", "FILES")
        lines = [head] + [
            (
                r.object,
                r.kind,
                f"{human(r.source_size) if r.source_size else 'new'} → {human(r.target_size)}",
                _change(r.source_type, r.target_type),
                _change(r.source_name, r.target_name),
                str(r.files) if r.files else "",
            )
            for r in self.rows
        ]
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
        return "\n".join(out) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "source": self.source.to_dict(),
            "target": self.target.to_dict(),
            "rows": [dataclasses.asdict(r) for r in self.rows],
            "warnings": list(self.warnings),
            "target_sizes": list(self.target_sizes),
            "resize": str(self.resize),
        }


def _change(a: str, b: str) -> str:
    return a if a == b else f"{a or '-'} → {b or '-'}"


def _mib(n: int) -> int:
    return -(-n // MiB)


# -- the source ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Src:
    """The planning source with its lookups."""

    layout: Layout
    edited: frozenset[str]  # partitions and LVs whose size the layout file changed
    fs_on: Mapping[str, Filesystem]  # device id → filesystem
    swap_on: Mapping[str, Swap]
    conv: Mapping[str, FsType]  # fs id → target type

    def vg(self, vg_id: str) -> VolumeGroup:
        return next(v for v in self.layout.vgs if v.id == vg_id)

    def size_of(self, obj_id: str) -> int:
        o = self.layout.get(obj_id)
        assert isinstance(o, Disk | Partition | LogicalVolume)
        return o.size

    def root_vg(self) -> str | None:
        root = self.layout.filesystem_at("/")
        lv = next((lv for lv in self.layout.lvs if root and lv.id == root.device), None)
        return lv.vg if lv else (self.layout.vgs[0].id if self.layout.vgs else None)


def _planning_source(archive: Layout, opts: PlanOptions) -> _Src:
    archive.validate()
    layout, edited = archive, frozenset[str]()
    if opts.edited is not None:
        layout, edited = _merge_edited(archive, opts.edited)
    fs_on, swap_on = {f.device: f for f in layout.filesystems}, {s.device: s for s in layout.swaps}
    return _Src(layout, edited, fs_on, swap_on, _conversions(layout, opts.convert))


def _merge_edited(archive: Layout, edited: Layout) -> tuple[Layout, frozenset[str]]:
    try:
        edited.validate()
    except LayoutError as e:
        raise LayoutError(f"layout file (-i): {e.message}", e.hint) from e
    arch, mine = {f.id: f for f in archive.filesystems}, {f.id: f for f in edited.filesystems}
    problems = [f"Filesystem {i} of the archive is missing" for i in sorted(arch.keys() - mine.keys())]
    problems += [f"Filesystem {i} is not in the archive" for i in sorted(mine.keys() - arch.keys())]
    problems += [
        f"Filesystem {a.id}: {what} {x} in the archive, {y} here"
        for a, b in ((arch[i], mine[i]) for i in sorted(arch.keys() & mine.keys()))
        for what, x, y in (("type", a.type, b.type), ("mount point", a.mountpoint, b.mountpoint))
        if x != y
    ]
    if problems:
        hint = "every archived filesystem is restored, at its mount point; change types with --convert OLD=NEW"
        raise LayoutError("layout file (-i): " + "; ".join(problems), hint)
    sizes = {p.id: p.size for p in archive.partitions} | {lv.id: lv.size for lv in archive.lvs}
    now = [(p.id, p.size) for p in edited.partitions] + [(lv.id, lv.size) for lv in edited.lvs]
    changed = frozenset(i for i, size in now if sizes.get(i, size) != size)
    used = replace(edited, filesystems=tuple(replace(f, used=arch[f.id].used) for f in edited.filesystems))
    return used, changed


def _conversions(src: Layout, convert: Mapping[str, str]) -> dict[str, FsType]:
    mapping: dict[str, str] = {}
    for old, new in convert.items():
        why = space.conversion_refusal(old, new)
        if why:
            hit = ", ".join(f"{f.mountpoint} ({f.id})" for f in src.filesystems if f.type == old)
            raise UsageError(f"--convert {old}={new}: " + (f"refused for {hit}: " if hit else "") + why)
        mapping[old] = new
    return {f.id: FsType(mapping.get(f.type, f.type)) for f in src.filesystems}


# -- placement --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Slot:
    """One partition to create: a copy of source object `ref` (kind "part") or a PV of VG `ref` (kind "pv")."""

    kind: str
    ref: str
    spills: bool = False  # a PV whose VG continues on a later target


def _place(src: _Src, targets: Sequence[Target], honour: bool) -> list[list[_Slot]]:
    lay, n = src.layout, len(targets)
    pvs = {pv for vg in lay.vgs for pv in vg.pvs}
    first = []
    for d in lay.disks:
        if d.id in src.fs_on or d.id in src.swap_on:
            first.append(_Slot("part", d.id))
        parts = sorted((p for p in lay.partitions if p.disk == d.id and p.id not in pvs), key=lambda p: p.start)
        first += [_Slot("part", p.id) for p in parts]
    homes: list[list[str]] = [[] for _ in targets]
    for vg in lay.vgs:
        for t in sorted({_pv_target(src, pv, n, honour) for pv in vg.pvs}):
            homes[t].append(vg.id)
    root = src.root_vg()
    for t in range(1, n):
        if not homes[t]:
            if root is None:
                raise UsageError(f"target {targets[t].path} would stay empty: the source has no volume group to span")
            homes[t].append(root)
    rows = [first + [_Slot("pv", v) for v in homes[0]]] + [[_Slot("pv", v) for v in homes[t]] for t in range(1, n)]
    return [
        [replace(s, spills=s.kind == "pv" and any(s.ref in homes[u] for u in range(t + 1, n))) for s in row]
        for t, row in enumerate(rows)
    ]


def _pv_target(src: _Src, pv: str, n: int, honour: bool) -> int:
    """The target of source PV pv: 0, or with a layout file (honour) the index of its disk when that target exists."""
    o = src.layout.get(pv)
    k = [d.id for d in src.layout.disks].index(o.disk if isinstance(o, Partition) else o.id) if honour else 0
    return k if k < n else 0


# -- sizes ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Mins:
    parts: Mapping[str, int]  # slot ref (source partition or disk) → bytes
    lvs: Mapping[str, int]  # lv id → extents
    need: Mapping[str, int]  # vg id → extents
    pref: Mapping[str, int]  # vg id → extents (EXACT: its source PVs' capacity)


def _minimums(src: _Src, slots: list[list[_Slot]], policy: Resize, files: Mapping[str, int]) -> _Mins:
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
        if fit and fs and lv.id not in src.edited:
            size = _required(src, fs, files)
        lvs[lv.id] = -(-size // src.vg(lv.vg).extent_size)
        need[lv.vg] += lvs[lv.id]
    pref = {
        vg.id: max(need[vg.id], sum(_pv_extents(src.size_of(pv), vg.extent_size) for pv in vg.pvs))
        for vg in src.layout.vgs
    }
    return _Mins(parts, lvs, need, need if fit else pref)


def _required(src: _Src, fs: Filesystem, files: Mapping[str, int]) -> int:
    tgt = src.conv[fs.id]
    made, _ = fsfeatures.carry(fs.type, tgt, fs.features, 0, fs.id)  # the block and inode size mkfs will use
    n = space.files_cost(fs.type, tgt, files.get(fs.id, 0))
    return space.required_bytes(tgt, fs.used, files=n, **fsfeatures.ext_sizes(made))


def _pv_bytes(extents: int, ext: int) -> int:
    return _mib(PE_START + max(1, extents) * ext) * MiB


def _pv_extents(size: int, ext: int) -> int:
    return max(0, size - PE_START) // ext


@dataclass(frozen=True)
class _Disk:
    """A target's room for partitions: [1 MiB, end); end None = an image the plan sizes."""

    target: Target
    end: int | None
    reserve: int  # bytes kept after end (GPT backup table)
    gaps: int  # bytes before logical partitions (msdos EBRs)


def _disks(targets: Sequence[Target], slots: list[list[_Slot]], table: TableType, opts: PlanOptions) -> list[_Disk]:
    reserve = MiB if table == TableType.GPT else 0
    gaps = [MiB * (len(row) - 3) if table == TableType.MSDOS and len(row) > 4 else 0 for row in slots]
    sizes = [t.size or opts.size or 0 for t in targets]
    made = zip(targets, sizes, gaps, strict=True)
    return [_Disk(t, size // MiB * MiB - reserve if size else None, reserve, gap) for t, size, gap in made]


def _allocate(src: _Src, slots: list[list[_Slot]], mins: _Mins, disks: list[_Disk], policy: Resize) -> list[list[int]]:
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
                remaining[s.ref] -= _pv_extents(sizes[i], src.vg(s.ref).extent_size)
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


def _advice(src: _Src, policy: Resize, n: int) -> str:
    more = "use a larger target or more targets"
    if policy is not Resize.FIT:
        more = "use a larger target, more targets, or --resize fit (shrinks filesystems to their data)"
    if n > 1 and len(src.layout.disks) > 1:
        more += "; without a layout file every VG starts on the first target: -i puts a VG on the target of its disk"
    return more


def _extend(src: _Src, t: int, row: list[_Slot], sizes: list[int], mins: _Mins, left: int, policy: Resize) -> None:
    """Give target t's free room: EXACT PVs on target 0 up to their source size, then the rest-taker the rest."""
    if t == 0 and policy is Resize.EXACT:
        for i, s in enumerate(row):
            if s.kind == "pv":
                grow = min(left, max(0, _pv_bytes(mins.pref[s.ref], src.vg(s.ref).extent_size) - sizes[i]))
                sizes[i], left = sizes[i] + grow, left - grow
    rest = _rest_taker(src, t, row, policy)
    if rest is not None:
        sizes[rest] += left


def _rest_taker(src: _Src, t: int, row: list[_Slot], policy: Resize) -> int | None:
    if t > 0:
        return len(row) - 1
    if policy is not Resize.GROW:
        return None
    pvs = [i for i, s in enumerate(row) if s.kind == "pv"]
    root = [i for i in pvs if row[i].ref == src.root_vg()]
    fss = [i for i, s in enumerate(row) if s.ref in src.fs_on and src.fs_on[s.ref].type != FsType.VFAT]
    found = root or pvs or fss
    return found[-1] if found else None


def _capacities(src: _Src, slots: list[list[_Slot]], sizes: list[list[int]]) -> dict[str, int]:
    caps = dict.fromkeys((vg.id for vg in src.layout.vgs), 0)
    for row, row_sizes in zip(slots, sizes, strict=True):
        for s, size in zip(row, row_sizes, strict=True):
            if s.kind == "pv":
                caps[s.ref] += _pv_extents(size, src.vg(s.ref).extent_size)
    return caps


def _lv_extents(src: _Src, mins: _Mins, caps: Mapping[str, int], policy: Resize) -> dict[str, int]:
    """Extents of each LV: the minimums, grown in proportion to fill their VG under GROW."""
    out = dict(mins.lvs)
    if policy is not Resize.GROW:
        return out
    for vg in src.layout.vgs:
        mine = [lv.id for lv in src.layout.lvs if lv.vg == vg.id]
        growers = [i for i in mine if i in src.fs_on]
        free, total = caps[vg.id] - sum(out[i] for i in mine), sum(mins.lvs[i] for i in growers)
        for i in growers if free > 0 and total else ():
            out[i] += free * mins.lvs[i] // total
    return out


def _policy(src: _Src, slots: list[list[_Slot]], disks: list[_Disk], opts: PlanOptions) -> Resize:
    """The asked policy, else GROW when growing would give something more than its source size."""
    if opts.resize is not None:
        return opts.resize
    mins = _minimums(src, slots, Resize.GROW, opts.files)
    sizes = _allocate(src, slots, mins, disks, Resize.GROW)
    caps = _capacities(src, slots, sizes)
    pairs = (pair for row, z in zip(slots, sizes, strict=True) for pair in zip(row, z, strict=True))
    parts = (size > mins.parts[s.ref] for s, size in pairs if s.kind == "part")
    return Resize.GROW if any(caps[v] > mins.pref[v] for v in caps) or any(parts) else Resize.EXACT


# -- the target layout --------------------------------------------------------------------------------------------
def _partition(src: _Src, s: _Slot, t: int, number: int, start: int, size: int, table: TableType) -> Partition:
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
    src: _Src, slots: list[list[_Slot]], sizes: list[list[int]], disks: list[_Disk], table: TableType
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


def _build(
    src: _Src, slots: list[list[_Slot]], sizes: list[list[int]], disks: list[_Disk], lv_extents: Mapping[str, int]
) -> tuple[Layout, list[str]]:
    tdisks, parts, where, pvs = _build_disks(src, slots, sizes, disks, _table(src.layout))
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
    layout = Layout(tuple(tdisks), tuple(parts), vgs, lvs, tuple(f for f, _ in made), swaps)
    return layout, [w for _, ws in made for w in ws]


def _table(source: Layout) -> TableType:
    first = source.disks[0].table
    return TableType.MSDOS if first == TableType.NONE else first


# -- checks -----------------------------------------------------------------------------------------------------
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


def _warnings(src: _Src, target: Layout, policy: Resize, targets: Sequence[Target], opts: PlanOptions) -> list[str]:
    out = []
    converted = [f"{f.mountpoint} ({f.id}) {f.type} → {src.conv[f.id]}" for f in src.layout.filesystems
                 if src.conv[f.id] != f.type]  # fmt: skip
    if opts.skip_space_check:
        out.append("space check skipped (-S): the targets were not checked against the data they must hold")
        if converted:
            out.append(f"-S with conversions: imgclone does not verify that the converted filesystems "
                       f"({', '.join(converted)}) have room for their contents plus the extra metadata")  # fmt: skip
    if opts.size is not None and all(t.size for t in targets):
        out.append("--size applies only to images being created (size 0); no target is one")
    free = space.free_bytes(target)
    if policy is Resize.FIT and sum(free) >= MiB:
        out.append(f"--resize fit leaves {sum(free) // MiB} MiB free: {free[0] // MiB} MiB unpartitioned, "
                   f"{free[1] // MiB} MiB in volume groups")  # fmt: skip
    unchecked = [f"{f.mountpoint} ({f.id})" for f in src.layout.filesystems
                 if f.id in opts.content and opts.content[f.id] is None]  # fmt: skip
    if unchecked:
        out.append(f"the archive records no largest file, hard links or xattrs for {', '.join(unchecked)} (made by an "
                   "older imgclone): the content check against the target types' limits could not be done")  # fmt: skip
    if converted and not opts.content:
        out.append(
            f"the archive is read as it is captured (restore -a -): its largest file, hard "
            f"links and xattrs are not known yet, so the converted filesystems ({', '.join(converted)}) were "
            "not checked against the new types' limits (for that check: capture to a file, restore from it)"
        )
    out += limits.content_warnings(src.layout, target, opts.content)
    return out + names.prefix_warnings(src.layout)


# -- the table --------------------------------------------------------------------------------------------------
def _rows(src: _Src, target: Layout, slots: list[list[_Slot]], honour: bool, files: Mapping[str, int]
          ) -> tuple[PlanRow, ...]:  # fmt: skip
    lay, rows = src.layout, []
    for i, d in enumerate(target.disks):
        o = lay.disks[i] if i < len(lay.disks) else None
        rows.append(PlanRow(d.id, "disk", o.size if o else 0, d.size, str(o.table) if o else "", str(d.table),
                            o.path if o else "", d.path))  # fmt: skip
    tparts = iter(target.partitions)
    for t, row in enumerate(slots):
        for s in row:
            p, ids = next(tparts), [s.ref]
            if s.kind == "pv":
                ids = [pv for pv in src.vg(s.ref).pvs if _pv_target(src, pv, len(slots), honour) == t]
            if p.number == 5 and target.disks[t].table == TableType.MSDOS:
                rows.append(_extended_row(target, p.disk))
            objs = [lay.get(i) for i in ids]
            flags = ",".join(str(f) for o in objs if isinstance(o, Partition) for f in o.flags)
            rows.append(PlanRow(p.id, "partition", sum(src.size_of(i) for i in ids), p.size, flags,
                                ",".join(map(str, p.flags)), ",".join(getattr(o, "path", "") or o.id for o in objs),
                                p.id))  # fmt: skip
    tvgs = {v.id: v for v in target.vgs}
    for vg in lay.vgs:
        tsize = sum(p.size for p in target.partitions if p.id in tvgs[vg.id].pvs)
        rows.append(PlanRow(vg.id, "vg", sum(src.size_of(pv) for pv in vg.pvs), tsize, "", "", vg.name,
                            tvgs[vg.id].name))  # fmt: skip
    for lv, tlv in zip(lay.lvs, target.lvs, strict=True):
        rows.append(PlanRow(lv.id, "lv", lv.size, tlv.size, "", "", lv.name, tlv.name))
    for fs, tfs in zip(lay.filesystems, target.filesystems, strict=True):
        rows.append(PlanRow(fs.id, "filesystem", src.size_of(fs.device), tfs.size, str(fs.type), str(tfs.type),
                            _fs_name(fs), _fs_name(tfs), files.get(fs.id, 0)))  # fmt: skip
    for sw, tsw in zip(lay.swaps, target.swaps, strict=True):
        rows.append(PlanRow(sw.id, "swap", src.size_of(sw.device), tsw.size, "swap", "swap", sw.label, tsw.label))
    return tuple(rows)


def _extended_row(target: Layout, disk: str) -> PlanRow:
    """The msdos extended partition 4 the executor makes around the logical ones (it is not in the layout)."""
    logical = [p for p in target.partitions if p.disk == disk and p.number > 4]
    start, end = logical[0].start - MiB, logical[-1].start + logical[-1].size
    number = f"{disk.replace('disk-', 'part-')}-4"
    return PlanRow(number, "partition", 0, end - start, "", "extended", "", number)


def _fs_name(fs: Filesystem) -> str:
    return f"{fs.mountpoint} [{fs.label}]" if fs.label else fs.mountpoint


# -- the plan ---------------------------------------------------------------------------------------------------
def make_plan(source: Layout, targets: Sequence[Target], opts: PlanOptions | None = None) -> Plan:
    """The target layout for restoring source (or opts.edited) onto targets; pure; LayoutError/UsageError."""
    opts = opts or PlanOptions()
    _check_args(source, targets, opts)
    src = _planning_source(source, opts)
    slots = _place(src, targets, honour=opts.edited is not None)
    disks = _disks(targets, slots, _table(src.layout), opts)
    policy = _policy(src, slots, disks, opts)
    mins = _minimums(src, slots, policy, opts.files)
    sizes = _allocate(src, slots, mins, disks, policy)
    extents = _lv_extents(src, mins, _capacities(src, slots, sizes), policy)
    target, warnings = _build(src, slots, sizes, disks, extents)
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
    warnings += _warnings(src, target, policy, targets, opts)
    rows = _rows(src, target, slots, opts.edited is not None, opts.files)
    return Plan(src.layout, target, rows, tuple(warnings), tuple(d.size for d in target.disks), policy)
