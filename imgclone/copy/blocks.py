"""imgclone copy by blocks: an image source copied as virt-resize copies it, then made into the alternate.

When a copy needs nothing that only files give (-e, a conversion, -i, shrinking, a kept archive), the
source's blocks are copied on the host by `qemu-img convert`, which skips unallocated and zero clusters: seconds,
where reading every file through one appliance and writing it through another takes minutes under TCG. One
appliance then turns the copy into what Phase 1 by files builds from the same plan:

- the plan is make_plan's, from the copy's own layout (the source's, block for block) and the target;
- partitions and LVs grow to the plan's sizes, and their filesystems with them (nothing moves or shrinks);
- the alternate's names (altinst_<vg>, alt_<lv>) and new PV, VG, filesystem and swap UUIDs and partition-table ids,
  as a clone beside its source needs; the clone's fstab follows them (restore.fix_references);
- what the image's /etc/exclude.rootvg excludes is removed, and its blocks trimmed (exclude_files).

`host_refusal` says, before anything is read, why a copy cannot go by blocks; `plan_refusal` says it of the plan,
and `CopyByFiles` carries either reason: the image the copy made is removed and the copy goes by files.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import posixpath
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from imgclone.capture import excludes
from imgclone.capture.common import CaptureOptions
from imgclone.capture.excludes import ExcludeRules
from imgclone.capture.offline import read_rules, select_names
from imgclone.errors import ImgcloneError
from imgclone.fs.space import LVM_PE_START
from imgclone.guest import session
from imgclone.guest.appliance import SYSROOT
from imgclone.guest.interface import Guest
from imgclone.guest.steps import Step, run_steps
from imgclone.host.images import image_info
from imgclone.host.run import HOST, PIPE, Pipeline
from imgclone.host.targets import TargetDisk
from imgclone.model import journal as state
from imgclone.model.layout import (
    Disk,
    Filesystem,
    FsType,
    Layout,
    LogicalVolume,
    Partition,
    Swap,
    TableType,
    VolumeGroup,
)
from imgclone.phases.phase import Phase
from imgclone.phases.restore import Restore, RestoreOptions, clean_up_failure, fix_references, record_start, unmount
from imgclone.plan.planner import make_plan
from imgclone.plan.types import Plan, PlanOptions, Resize, Target
from imgclone.storage import build

log = logging.getLogger("imgclone")
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
        if _device_grows(plan, fs.device) and fs.type not in GROWN_TYPES:
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


def _device_grows(plan: Plan, target_device: str) -> bool:
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


# -- the host's half: the blocks ------------------------------------------------------------------------------------
def copy_image(source: str, source_format: str, target: TargetDisk, size: int, progress: bool | None) -> TargetDisk:
    """The source's blocks into a new image of `size` bytes (qemu-img convert, then resize), with a bar."""
    argv = ["qemu-img", "convert", "-p", "-f", source_format, "-O", target.format, source, target.path]
    disable = not (sys.stderr.isatty() if progress is None else progress)
    with tqdm(total=100.0, unit="%", desc="copy blocks", disable=disable, file=sys.stderr,
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}% [{elapsed}]") as bar,  \
            Pipeline([argv], stdout=PIPE, stderr=PIPE) as p:  # fmt: skip
        for done in _percentages(p.out.read1):  # type: ignore[attr-defined]
            bar.update(done - bar.n)
        p.check()
    HOST.run(["qemu-img", "resize", "-q", "-f", target.format, target.path, str(size)])
    return TargetDisk(target.path, target.kind, target.format, size, True, target.sector_size)


def _percentages(read: Callable[[int], bytes]) -> Iterator[float]:
    """qemu-img -p's "    (12.34/100%)\\r" records, as numbers."""
    pending = b""
    while chunk := read(4096):
        *records, pending = (pending + chunk).split(b"\r")
        for r in records:
            text = r.strip().strip(b"()").split(b"/")[0]
            try:
                yield float(text)
            except ValueError:
                continue


# -- the appliance's half: the alternate -----------------------------------------------------------------------------
def phase1(opts: RestoreOptions, cap: CaptureOptions, disk: TargetDisk, appliance: session.Session) -> Restore:
    """Phase 1 by blocks: the copy, its probe and plan, then the steps that make it the alternate; raises CopyByFiles
    (with the image removed) when the plan asks for what blocks cannot give."""
    assert cap.source is not None
    fmt, source_size = image_info(cap.source)
    if opts.plan.size is not None and opts.plan.size < source_size:
        raise CopyByFiles("--size is smaller than the source disk")
    t0 = time.monotonic()
    try:
        made = copy_image(cap.source, fmt, disk, opts.plan.size or source_size, opts.progress)
    except BaseException:  # a failed or interrupted qemu-img leaves no partial image behind
        Path(disk.path).unlink(missing_ok=True)
        raise
    copied = round(time.monotonic() - t0, 1)
    ctx: BlockCopy | None = None
    try:
        with session.opened([(made.path, made.format)], appliance, debug=opts.debug, discard=True) as g, \
                tempfile.TemporaryDirectory(prefix="imgclone-") as tmp:  # fmt: skip
            launched = time.monotonic()
            ctx = plan_copy(g, opts, cap, made, source_size, Path(tmp))
            ctx.timings |= {"copy_blocks": copied, "launch": round(launched - t0 - copied, 1),
                            "probe_copy": round(time.monotonic() - launched, 1)}  # fmt: skip
            run_steps(Phase.RESTORE.value, ctx, STEPS)
    except CopyByFiles:
        appliance.close()
        Path(made.path).unlink(missing_ok=True)
        raise
    except BaseException as e:
        failed = ctx or Restore(targets=opts.targets, opts=opts, manifest={}, disks=[made], plan=_empty_plan(),
                                created=[made])  # fmt: skip
        clean_up_failure(failed, e)
        raise
    state.save_phase1(opts.targets, ctx.disks, ctx.plan, ctx.manifest, opts.archive_name or state.BLOCKS, ctx.uuids)
    return ctx


def _empty_plan() -> Plan:
    return Plan(Layout(), Layout(), (), (), ())


@dataclass(kw_only=True)
class BlockCopy(Restore):
    """Phase 1 by blocks: a restore's context, with the exclude rules of the copy's image."""

    rules: ExcludeRules
    workdir: Path  # for the lists of names the rules keep


def plan_copy(g: Guest, opts: RestoreOptions, cap: CaptureOptions, made: TargetDisk, source_size: int,
              workdir: Path) -> BlockCopy:  # fmt: skip
    """Probe the copy (the source's layout, block for block), read its exclude rules, and plan as restore does."""
    from imgclone.probe.bootfacts import boot_facts_guest
    from imgclone.probe.guest import mount_sources, probe_image, used_inodes

    layout, found = probe_image(g, [made.path])
    (disk,) = layout.disks  # the copy's, already resized: the source's own size is the source's
    layout = dataclasses.replace(layout, disks=(dataclasses.replace(disk, size=source_size),))
    if len(g.lvs()) != len(layout.lvs):
        raise CopyByFiles("the source has LVs its layout does not describe (snapshots, thin volumes)")
    starts = g.appliance_command(["lvm", "pvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "pe_start"])
    if any(int(n) != PE_START for n in starts.split()):
        raise CopyByFiles("a PV's first extent is not 1 MiB in, as the plan assumes")
    mount_sources(g, found)
    rules = read_rules(g, workdir, cap)
    inodes = used_inodes(g, found)
    boot = boot_facts_guest(g, layout)
    g.umount_all()
    plan, why = blocks_plan(layout, Target(made.path, made.size, made.sector_size),
                            dataclasses.replace(opts.plan, files=inodes))  # fmt: skip
    if plan is None:
        raise CopyByFiles(why)
    manifest = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "boot": boot.to_dict(),
                "source": {"kind": "image", "path": cap.source, "format": made.format}, "streams": []}  # fmt: skip
    for w in plan.warnings:
        print(f"imgclone: warning: {w}", file=sys.stderr)
    ctx = BlockCopy(targets=opts.targets, opts=opts, manifest=manifest, disks=[made], plan=plan, guest=g,
                    created=[made], rules=rules, workdir=workdir)  # fmt: skip
    ctx.devs = build.Devices(plan.target, {plan.target.disks[0].id: g.list_devices()[0]})
    return ctx


def _g(ctx: Restore) -> tuple[Guest, build.Devices]:
    return ctx.g, ctx.devices


def check_device(ctx: Restore) -> None:
    """The appliance sees one disk, the copy, of the plan's size."""
    g, devs = _g(ctx)
    dev = devs.path(ctx.plan.target.disks[0].id)
    size, planned = g.blockdev_getsize64(dev), ctx.plan.target.disks[0].size
    if size != planned:
        raise ImgcloneError(f"the copy is {size} bytes, the plan says {planned}")


def grow_partitions(ctx: Restore) -> None:
    """GPT's backup table to the new end; each partition the plan grows, to its planned end (starts stay)."""
    g, devs = _g(ctx)
    disk = ctx.plan.target.disks[0]
    dev = devs.path(disk.id)
    if disk.table is TableType.GPT:
        g.part_expand_gpt(dev)  # the backup table to the end of the resized copy (where it is already: no change)
    src = {p.number: p for p in ctx.plan.source.partitions}
    for p in ctx.plan.target.partitions:
        if p.size > src[p.number].size:
            g.part_resize(dev, p.number, (p.start + p.size) // disk.sector_size - 1)


def renew_lvm(ctx: Restore) -> None:
    """Each VG: its PVs grown to their partitions and given new UUIDs, a new VG UUID, the alternate's names, the LVs
    extended to the plan's sizes. All while the VG is inactive (vgchange --uuid requires it)."""
    g, devs = _g(ctx)
    src, tgt = ctx.plan.source, ctx.plan.target
    for vg in tgt.vgs:
        old = src.get(vg.id)
        assert isinstance(old, VolumeGroup)
        g.vg_activate(False, [old.name])
        for pv in vg.pvs:
            g.pvresize(devs.path(pv))
            g.pvchange_uuid(devs.path(pv))
        g.vgchange_uuid(old.name)
        if old.name != vg.name:
            g.vgrename(old.name, vg.name)
        for lv in (lv for lv in tgt.lvs if lv.vg == vg.id):
            was = src.get(lv.id)
            assert isinstance(was, LogicalVolume)
            if was.name != lv.name:
                g.lvrename(f"/dev/{vg.name}/{was.name}", f"/dev/{vg.name}/{lv.name}")
            if lv.size > was.size:
                g.appliance_command(["lvm", "lvextend", "--yes", "-l", str(lv.size // vg.extent_size),
                                     f"{vg.name}/{lv.name}"])  # fmt: skip
        g.vg_activate(True, [vg.name])


def renew_filesystems(ctx: Restore) -> None:
    """Every filesystem checked, given a new UUID (unless --keep-uuids) and grown to its device; every swap given a
    new UUID (made again when its device grew)."""
    g, devs = _g(ctx)
    keep = ctx.opts.keep_uuids
    for fs in ctx.plan.target.filesystems:
        dev = devs.path(fs.device)
        grows = _device_grows(ctx.plan, fs.device)
        if fs.type is FsType.XFS:
            g.mount(dev, "/")  # replays the log, which xfs_admin needs clean
            if grows:
                g.xfs_growfs("/", datasec=True)
            g.umount_all()
            if not keep:
                g.set_uuid_random(dev)
        elif fs.type is FsType.VFAT:  # never grown (plan_refusal); libguestfs 1.48's set_uuid has no vfat
            if not keep:
                g.appliance_command(["fatlabel", "-i", dev, f"{secrets.randbits(32) | 1:08x}"])
        else:
            g.e2fsck(dev, correct=True)  # tune2fs -U and resize2fs want a freshly checked filesystem
            if not keep:
                g.set_uuid_random(dev)
            if grows:
                g.resize2fs(dev)
        ctx.uuids[fs.id] = g.vfs_uuid(dev)
    for sw in ctx.plan.target.swaps:
        dev = devs.path(sw.device)
        old = ctx.plan.source.get(sw.id)
        assert isinstance(old, Swap)
        new = old.uuid if keep and old.uuid else str(uuid.uuid4())
        g.mkswap(dev, uuid=new, **({"label": old.label} if old.label else {}))
        ctx.uuids[sw.id] = g.vfs_uuid(dev)


def exclude_files(ctx: BlockCopy) -> None:
    """What the exclude rules leave out of a capture is removed from the copy, each filesystem mounted alone as the
    capture mounts it: its data overwritten with zeros, then deleted, and the freed blocks discarded (fstrim), so
    that the image holds neither the files nor their data, as a copy by files would not."""
    rules, workdir = ctx.rules, ctx.workdir
    if not rules.patterns:
        return
    g, devs = _g(ctx)
    for fs in ctx.plan.target.mount_order():
        g.umount_all()
        g.mount(devs.path(fs.device), "/")
        sel = select_names(g, fs, rules, workdir / f"{fs.id}.kept")
        prefix = excludes.tree_prefix(fs.mountpoint)
        paths = [os.fsdecode(name[1:]) for name in sel.excluded]
        parents = {p: g.lstatns(p) for p in {posixpath.dirname(path) for path in paths}}  # as the capture saw them
        for path, name in zip(paths, sel.excluded, strict=True):
            log.debug("excluded: %s", (prefix + name[1:]).decode("utf-8", "backslashreplace"))
            # zeros over the data first: fstrim frees only whole clusters of the image, so a small file's data
            # would stay in it; a file with another link keeps its data for that link
            g.appliance_command(["find", SYSROOT + path, "-type", "f", "-links", "1", "-exec", "shred", "-n", "0",
                                 "-z", "{}", "+"])  # fmt: skip
            g.rm_rf(path)
        if paths:
            log.info("%s: removed %d excluded name(s) from the copy, as a capture leaves them out", fs.mountpoint,
                     len(paths))  # fmt: skip
        for parent, st in parents.items():  # a removal touches its directory: its times go back to the source's
            g.utimens(parent, st["st_atime_sec"], st["st_atime_nsec"], st["st_mtime_sec"], st["st_mtime_nsec"])
        if paths:
            g.fstrim("/")
    g.umount_all()


def renew_tables(ctx: Restore) -> None:
    """New partition-table ids, as a new table would have: GPT disk and partition GUIDs, or the MBR disk id (and so
    every msdos PARTUUID)."""
    g, devs = _g(ctx)
    disk = ctx.plan.target.disks[0]
    dev = devs.path(disk.id)
    if disk.table is TableType.GPT:
        g.appliance_command(["sgdisk", "--randomize-guids", dev])
    elif disk.table is TableType.MSDOS:
        g.appliance_command(["sfdisk", "--disk-id", dev, f"0x{secrets.randbits(32) | 1:08x}"])


STEPS: tuple[Step[BlockCopy], ...] = (
    Step(check_device), Step(record_start), Step(grow_partitions), Step(renew_lvm), Step(renew_filesystems),
    Step(exclude_files), Step(renew_tables), Step(fix_references), Step(unmount),
)  # fmt: skip
