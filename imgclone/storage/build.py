"""Build a planned layout on target disks inside the appliance: partitions, LVM, mkfs, mounts.

Each step takes the Guest and the target Layout and creates exactly what the layout says;
the appliance's device names come from `Devices`, which maps layout ids to them.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from imgclone.errors import GuestfsError, UsageError
from imgclone.fs import features as fsfeatures
from imgclone.guest import treemount
from imgclone.guest.host_disks import partition_node
from imgclone.guest.interface import Guest
from imgclone.model import parttypes, trees
from imgclone.model.layout import (
    Disk,
    Filesystem,
    FsType,
    Layout,
    LogicalVolume,
    LvKind,
    PartFlag,
    Partition,
    TableType,
    VolumeGroup,
)
from imgclone.units import MiB

log = logging.getLogger("imgclone")
LVM_EXTENT = 4 * MiB  # vgcreate's default extent size

LABEL_LIMITS = {"vfat": 11, "xfs": 12, "ext2": 16, "ext3": 16, "ext4": 16, "btrfs": 255, "swap": 16}


@dataclass(frozen=True)
class Devices:
    """Layout ids → the guest's device paths (/dev/sda, /dev/sda2, /dev/altinst_rootvg/alt_root; on the host
    /dev/loop0p2, /dev/nvme0n1p2)."""

    layout: Layout
    disks: dict[str, str]  # disk id → /dev/sdX, in -d order

    def path(self, obj_id: str) -> str:
        obj = self.layout.get(obj_id)
        if isinstance(obj, Disk):
            return self.disks[obj.id]
        if isinstance(obj, Partition):
            return partition_node(self.disks[obj.disk], obj.number)
        if isinstance(obj, LogicalVolume):
            vg = self.layout.get(obj.vg)
            return f"/dev/{getattr(vg, 'name', '')}/{obj.name}"
        raise UsageError(f"{obj_id}: not a block device in the layout")


def check_empty(g: Guest, devs: Devices, force: bool) -> None:
    """Refuse targets that already hold a partition table, a PV or an alternate VG."""
    existing_vgs = set(g.vgs())
    for vg in devs.layout.vgs:
        if vg.name in existing_vgs:
            raise UsageError(
                f"volume group {vg.name} already exists on a target (an earlier alternate)",
                "`imgclone alt cleanup -d TARGETS --wipe` removes it; --force does not override this",
            )
    if force:
        return
    for disk in devs.layout.disks:
        dev = devs.disks[disk.id]
        what = _occupied(g, dev)
        if what:
            raise UsageError(f"-d {disk.path}: {what}", "refusing to overwrite it; --force if you are sure")


def _occupied(g: Guest, dev: str) -> str:
    try:
        return f"already has a {g.part_get_parttype(dev)} partition table"
    except GuestfsError:
        pass
    kind = g.vfs_type(dev) if dev in g.list_filesystems() else ""
    return f"holds a {kind} signature" if kind and kind != "unknown" else ""


def partition_disks(g: Guest, devs: Devices) -> None:
    """Partition tables and partitions with their flags, GPT names and types.

    On msdos, partitions numbered 5 and up are logical (the planner leaves 1 MiB before each for its EBR): an
    extended partition 4 spans them, from 1 MiB before the first to the end of the last, as parted makes it.
    """
    for disk in devs.layout.disks:
        parts = sorted((p for p in devs.layout.partitions if p.disk == disk.id), key=lambda p: p.number)
        dev = devs.disks[disk.id]
        g.wipefs(dev)
        if disk.table is TableType.NONE or not parts:
            continue
        g.part_init(dev, str(disk.table))
        ss = disk.sector_size
        logical = [p for p in parts if p.number > 4] if disk.table is TableType.MSDOS else []
        for p in parts:
            if logical and p is logical[0]:  # the extended partition: from the first EBR to the last logical's end
                last = logical[-1]
                g.part_add(dev, "e", (p.start - MiB) // ss, (last.start + last.size) // ss - 1)
            g.part_add(dev, "l" if p in logical else "p", p.start // ss, (p.start + p.size) // ss - 1)
            _flag(g, dev, disk.table, p)


def _flag(g: Guest, dev: str, table: TableType, p: Partition) -> None:
    if table is TableType.GPT:
        guid = parttypes.gpt_type(p.flags) or p.type_uuid
        if guid:
            g.part_set_gpt_type(dev, p.number, guid)
        if p.name:
            g.part_set_name(dev, p.number, p.name)
        return
    mbr = parttypes.mbr_id(p.flags)
    if mbr is not None:
        g.part_set_mbr_id(dev, p.number, mbr)
    if PartFlag.BOOT in p.flags:
        g.part_set_bootable(dev, p.number, True)


def create_lvm(g: Guest, devs: Devices) -> None:
    """PVs, VGs (already named altinst_<vg>) with the source's extent size, and LVs (alt_<lv>) of whole extents."""
    for vg in devs.layout.vgs:
        pvs = [devs.path(pv) for pv in vg.pvs]
        for pv in pvs:
            g.pvcreate(pv)
        if vg.extent_size == LVM_EXTENT:
            g.vgcreate(vg.name, pvs)
        else:  # libguestfs's vgcreate takes no extent size
            g.appliance_command(["lvm", "vgcreate", "--yes", "-s", f"{vg.extent_size // 1024}k", vg.name, *pvs])
        mine = [lv for lv in devs.layout.lvs if lv.vg == vg.id]
        for lv in sorted(mine, key=lambda lv: LV_ORDER[lv.kind]):  # a thin LV's pool first
            if lv.kind != LvKind.LINEAR:
                g.appliance_command(thin_lvcreate_argv(devs.layout, vg, lv))
            elif lv.size % MiB == 0:
                g.lvcreate(lv.name, vg.name, lv.size // MiB)
            else:  # extents below 1 MiB: lvcreate's MiB would not be exact
                extents = str(lv.size // vg.extent_size)
                g.appliance_command(["lvm", "lvcreate", "--yes", "-l", extents, "-n", lv.name, vg.name])


LV_ORDER = {LvKind.THIN_POOL: 0, LvKind.LINEAR: 1, LvKind.THIN: 2}
# the appliance has no thin_check (thin-provisioning-tools): LVM runs it when it activates a pool, which a new,
# empty pool does not need; the clone's own LVM (with the tools the source had) checks it when it boots
NO_THIN_CHECK = ["--config", 'global { thin_check_executable = "" }']


def thin_lvcreate_argv(layout: Layout, vg: VolumeGroup, lv: LogicalVolume) -> list[str]:
    """lvcreate of a thin pool (data size, chunk size, metadata size as the source's) or of a thin LV (its
    virtual size, in its pool): LVM's own arguments, sizes in bytes."""
    base = ["lvm", "lvcreate", *NO_THIN_CHECK, "--yes", "-n", lv.name]
    if lv.kind == LvKind.THIN_POOL:
        argv = [*base, "--type", "thin-pool", "-L", f"{lv.size}b", "--zero", "y"]
        if lv.chunk_size:
            argv += ["--chunksize", f"{lv.chunk_size // 1024}k"]
        if lv.metadata_size:
            argv += ["--poolmetadatasize", f"{lv.metadata_size}b"]
        return [*argv, vg.name]
    pool = layout.get(lv.pool)
    assert isinstance(pool, LogicalVolume)
    return [*base, "--type", "thin", "-V", f"{lv.size}b", "--thinpool", pool.name, vg.name]


def make_filesystems(g: Guest, devs: Devices, keep_uuids: dict[str, str]) -> dict[str, str]:
    """mkfs every filesystem (with the features the plan gives it, see fsfeatures) and mkswap every swap; return
    id → new UUID."""
    uuids: dict[str, str] = {}
    for fs in devs.layout.filesystems:
        dev = devs.path(fs.device)
        label = _label(fs.label, str(fs.type))
        xfs = fsfeatures.xfs_mkfs_argv(fs.features, dev, label) if fs.type is FsType.XFS else None
        if xfs:
            g.appliance_command(xfs)  # libguestfs's mkfs passes no -m/-i/-n to mkfs.xfs
        else:
            opts = fsfeatures.ext_mkfs_options(fs.features) if str(fs.type) in fsfeatures.EXT_TYPES else {}
            g.mkfs(str(fs.type), dev, **opts, label=label or None)
        if fs.id in keep_uuids:
            g.set_uuid(dev, keep_uuids[fs.id])
        uuids[fs.id] = g.vfs_uuid(dev)
    for sw in devs.layout.swaps:
        dev = devs.path(sw.device)
        opts = {"label": _label(sw.label, "swap")} if sw.label else {}
        if sw.id in keep_uuids:
            opts["uuid"] = keep_uuids[sw.id]
        g.mkswap(dev, **opts)
        uuids[sw.id] = g.vfs_uuid(dev)
    return uuids


def _label(label: str, fstype: str) -> str:
    limit = LABEL_LIMITS.get(fstype, 16)
    if len(label.encode()) > limit:
        log.warning("label %r is too long for %s; truncated to %d bytes", label, fstype, limit)
        return label.encode()[:limit].decode(errors="ignore")
    return label


def mount_tree(g: Guest, devs: Devices) -> list[Filesystem]:
    """Mount the target's trees at their mount points in the appliance, parents first (a btrfs's subvolumes each
    at its own); return the filesystems mounted."""
    order = trees.mounted(devs.layout)
    for t in order:
        if t.mountpoint != "/":
            g.mkdir_p(t.mountpoint)
        treemount.mount_tree(g, t, devs.path(t.fs.device), t.mountpoint)
    return list({t.fs.id: t.fs for t in order}.values())


def create_subvolumes(g: Guest, devs: Devices, made: Sequence[trees.Tree]) -> None:
    """The btrfs subvolumes of the trees `made`, parents first, in each filesystem's top level (mounted alone at
    /); the default one set as on the source. Read-only comes last (seal_subvolumes), after their streams."""
    for fs in devs.layout.filesystems:
        subs = sorted((t for t in made if t.fs.id == fs.id and t.subvol), key=lambda t: t.subvol.count("/"))
        if not subs:
            continue
        g.umount_all()
        treemount.mount_tree(g, trees.top_level(fs), devs.path(fs.device), "/")
        for t in subs:  # by depth: a subvolume mounted above its parent's mount point still comes after it
            parent = posixpath.dirname(t.subvol)
            if parent:
                g.mkdir_p("/" + parent)
            g.appliance_command(["btrfs", "subvolume", "create", _in_root(g, t.subvol)])
        default = next((s for s in devs.layout.subvolumes_of(fs.id) if s.default), None)
        if default is not None and any(t.id == default.id for t in subs):
            new_id = g.appliance_command(["btrfs", "inspect-internal", "rootid", _in_root(g, default.path)]).strip()
            g.appliance_command(["btrfs", "subvolume", "set-default", new_id, _in_root(g, "")])
        g.umount_all()


def seal_subvolumes(g: Guest, devs: Devices, made: Sequence[trees.Tree]) -> None:
    """Make read-only the subvolumes that were (snapshots kept with --snapshots), once their streams are in."""
    for fs in devs.layout.filesystems:
        ro = {s.id for s in devs.layout.subvolumes_of(fs.id) if s.readonly}
        subs = [t for t in made if t.fs.id == fs.id and t.id in ro]
        if not subs:
            continue
        g.umount_all()
        treemount.mount_tree(g, trees.top_level(fs), devs.path(fs.device), "/")
        for t in subs:
            g.appliance_command(["btrfs", "property", "set", "-ts", _in_root(g, t.subvol), "ro", "true"])
        g.umount_all()


def _in_root(g: Guest, path: str) -> str:
    """A path of the tree mounted at / as the worker's programs see it."""
    return posixpath.join(g.sysroot, path) if path else g.sysroot


def devices(g: Guest, layout: Layout) -> Devices:
    """Layout ids → appliance device names, the layout's disks being the appliance's drives in the order added."""
    listed = g.list_devices()
    return Devices(layout, {d.id: listed[i] for i, d in enumerate(layout.disks)})
