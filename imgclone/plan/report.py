"""What a plan tells: its warnings, and the rows of its --dry-run table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from imgclone.fs import limits, space
from imgclone.model import names
from imgclone.model.layout import Filesystem, Layout, LvKind, Partition, TableType
from imgclone.plan.placement import Slot, pv_target
from imgclone.plan.source import PlanSource
from imgclone.plan.types import PlanOptions, PlanRow, Resize, Target
from imgclone.units import MiB


def plan_warnings(
    src: PlanSource, target: Layout, policy: Resize, targets: Sequence[Target], opts: PlanOptions
) -> list[str]:
    """What the user should know of a plan that stands: checks skipped or not possible, room left free, names."""
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


def plan_rows(src: PlanSource, target: Layout, slots: list[list[Slot]], honour: bool, files: Mapping[str, int]
              ) -> tuple[PlanRow, ...]:  # fmt: skip
    """The --dry-run table's rows: disks, partitions (msdos's extended one too), VGs, LVs, filesystems, swaps."""
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
                ids = [pv for pv in src.vg(s.ref).pvs if pv_target(src, pv, len(slots), honour) == t]
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
        kind = "" if lv.kind == LvKind.LINEAR else str(lv.kind)  # thin-pool, thin (its size: virtual)
        rows.append(PlanRow(lv.id, "lv", lv.size, tlv.size, kind, kind, lv.name, tlv.name))
    for fs, tfs in zip(lay.filesystems, target.filesystems, strict=True):
        rows.append(PlanRow(fs.id, "filesystem", src.size_of(fs.device), tfs.size, str(fs.type), str(tfs.type),
                            _fs_name(fs), _fs_name(tfs), files.get(fs.id, 0)))  # fmt: skip
    for sv in target.subvolumes:  # made again as they are: a btrfs's subvolumes share its space
        where = f"{sv.mountpoint or '-'} ({sv.path}{', default' if sv.default else ''})"
        rows.append(PlanRow(sv.id, "subvolume", 0, 0, "btrfs", "btrfs", where, where))
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
