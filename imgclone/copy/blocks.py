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

blocks_rules.py decides whether a copy can go by blocks, before anything is read and once its plan is known;
`CopyByFiles` carries the reason it cannot: the image the copy made is removed and the copy goes by files.
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
from imgclone.copy.blocks_rules import PE_START, CopyByFiles, blocks_plan, device_grows
from imgclone.errors import ImgcloneError
from imgclone.guest import session
from imgclone.guest.interface import Guest
from imgclone.guest.steps import Step, run_steps
from imgclone.guest.treemount import mount_tree
from imgclone.host.images import image_info
from imgclone.host.run import HOST, PIPE, Pipeline
from imgclone.host.targets import TargetDisk
from imgclone.model import journal as state
from imgclone.model.layout import (
    FsType,
    Layout,
    LogicalVolume,
    Swap,
    TableType,
    VolumeGroup,
)
from imgclone.model.manifest import Manifest, Source
from imgclone.model.trees import mounted
from imgclone.phases.phase import Phase
from imgclone.phases.restore import (
    Restore,
    RestoreOptions,
    clean_up_failure,
    fix_references,
    journal_of,
    record_start,
    unmount,
)
from imgclone.plan.types import Plan, Target
from imgclone.storage import build

log = logging.getLogger("imgclone")


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
        failed = ctx or Restore(targets=opts.targets, opts=opts, manifest=Manifest(Layout(), Source("image"), None),
                                disks=[made], plan=_empty_plan(), created=[made])  # fmt: skip
        clean_up_failure(failed, e)
        raise
    state.save_phase1(opts.targets, journal_of(ctx))
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
    # what the journal records of the source (the copy reads no archive: no streams, no excludes recorded)
    manifest = Manifest(layout, Source("image", path=cap.source or "", format=made.format), boot)
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
        grows = device_grows(ctx.plan, fs.device)
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
    for tree in mounted(ctx.plan.target):  # btrfs, whose subvolumes are trees of their own, is never copied by blocks
        fs = tree.fs
        g.umount_all()
        mount_tree(g, tree, devs.path(fs.device), "/")
        sel = select_names(g, tree, rules, workdir / f"{fs.id}.kept")
        prefix = excludes.tree_prefix(fs.mountpoint)
        paths = [os.fsdecode(name[1:]) for name in sel.excluded]
        parents = {p: g.lstatns(p) for p in {posixpath.dirname(path) for path in paths}}  # as the capture saw them
        for path, name in zip(paths, sel.excluded, strict=True):
            log.debug("excluded: %s", (prefix + name[1:]).decode("utf-8", "backslashreplace"))
            # zeros over the data first: fstrim frees only whole clusters of the image, so a small file's data
            # would stay in it; a file with another link keeps its data for that link
            g.appliance_command(["find", g.sysroot + path, "-type", "f", "-links", "1", "-exec", "shred", "-n", "0",
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
