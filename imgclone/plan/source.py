"""The planning source: the archive's layout, or the layout file (-i) checked against it, with the lookups the
planner uses and each filesystem's target type (--convert, -T)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from imgclone.errors import LayoutError, UsageError
from imgclone.fs import space
from imgclone.model.layout import (
    Disk,
    Filesystem,
    FsType,
    Layout,
    LogicalVolume,
    Partition,
    Swap,
    VolumeGroup,
)
from imgclone.plan.types import PlanOptions


@dataclass(frozen=True)
class PlanSource:
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


def planning_source(archive: Layout, opts: PlanOptions) -> PlanSource:
    """The layout to plan from (the archive's, or opts.edited checked against it) and its lookups."""
    archive.validate()
    layout, edited = archive, frozenset[str]()
    if opts.edited is not None:
        layout, edited = _merge_edited(archive, opts.edited)
    fs_on, swap_on = {f.device: f for f in layout.filesystems}, {s.device: s for s in layout.swaps}
    conv = _conversions(layout, opts.convert)
    _refuse_lost_subvolumes(layout, conv)
    return PlanSource(layout, edited, fs_on, swap_on, conv)


def _refuse_lost_subvolumes(layout: Layout, conv: Mapping[str, FsType]) -> None:
    """A btrfs with subvolumes converted to a type that has none: refused by name (its streams are one per
    subvolume, each for a subvolume of its own)."""
    for sv in layout.subvolumes:
        new = conv.get(sv.filesystem, FsType.BTRFS)
        if new != FsType.BTRFS:
            raise LayoutError(f"Subvolume {sv.id}: --convert btrfs={new} cannot hold btrfs subvolume {sv.path} of "
                              f"{sv.filesystem}", "this imgclone restores subvolumes into btrfs only; "
                              "leave --convert btrfs=... out for this archive")  # fmt: skip


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
    used = replace(edited, filesystems=tuple(replace(f, used=arch[f.id].used) for f in edited.filesystems),
                   subvolumes=archive.subvolumes)  # the archive's streams are its subvolumes'  # fmt: skip
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
