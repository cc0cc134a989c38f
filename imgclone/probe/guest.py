"""Probe the storage layout of an offline image or unmounted device through a read-only appliance.

`probe_image` finds the one operating system's root on the drives, describes every disk,
partition, volume group and logical volume the appliance sees, and the filesystems and
swap the guest's fstab uses (mounted read-only only to measure them). Paths in the layout
are the appliance's (/dev/sda2, /dev/rootvg/root). The fstab parsing and the mapping of
partition types to flags are pure functions in guest_parsers.py, tested without an appliance.
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from imgclone.errors import GuestfsError, ImgcloneError, LayoutError
from imgclone.fs import features as fsfeatures
from imgclone.guest.interface import Guest
from imgclone.host.reports import parse_lvm_report
from imgclone.model import parttypes
from imgclone.model.layout import (
    Disk,
    Filesystem,
    FsType,
    Layout,
    LogicalVolume,
    Partition,
    Subvolume,
    Swap,
    TableType,
    VolumeGroup,
    fs_id,
    mount_key,
)
from imgclone.probe import btrfs
from imgclone.probe.guest_parsers import (
    DeviceIndex,
    FstabEntry,
    PartEntry,
    blkid_value,
    canonical_device,
    gpt_flags,
    lvm_uuid,
    mbr_flags,
    mountpoints,
    parse_fstab,
    part_entry,
    resolve_spec,
    xfs_features,
)
from imgclone.probe.host_parsers import LVS_KINDS, lv_kind

log = logging.getLogger("imgclone")

# lv_attr[0] of LVs the layout cannot describe: snapshots, thin pools/volumes, pvmove, virtual
LV_KINDS_SKIPPED = "sSpve"  # lv_attr's first letter: snapshots, pvmove, virtual, metadata (thin: t pool, V LV)


@dataclass(frozen=True)
class GuestSource:
    fs_id: str  # Filesystem.id in the layout (a btrfs subvolume mounted below its filesystem's: fs_id(mountpoint))
    device: str  # the appliance's device, e.g. /dev/sda2 or /dev/rootvg/root
    mountpoint: str  # where the guest mounts it ("/", "/boot", "/var")
    subvol: str = ""  # the btrfs subvolume mounted there, from the top level ("": the default one)

    @property
    def mountable(self) -> str:
        """What libguestfs mounts: the device, or `btrfsvol:DEVICE/SUBVOLUME`."""
        return f"btrfsvol:{self.device}/{self.subvol}" if self.subvol else self.device


def mount_sources(g: Guest, sources: Iterable[GuestSource]) -> None:
    """Mount the probed filesystems read-only at their mount points, parents first."""
    for src in sorted(sources, key=lambda s: mount_key(s.mountpoint)):
        try:
            g.mount_ro(src.mountable, src.mountpoint)
        except GuestfsError as e:
            raise GuestfsError(f"cannot mount {src.mountable} read-only at {src.mountpoint}: {e}") from e


def used_inodes(g: Guest, sources: Iterable[GuestSource]) -> dict[str, int]:
    """fs id → inodes in use on each source filesystem, mounted (mount_sources): as probe_host.used_inodes."""
    counts: dict[str, int] = {}
    for s in sources:
        st = g.statvfs(s.mountpoint)
        if int(st["files"]):
            counts[s.fs_id] = int(st["files"]) - int(st["ffree"])
    return counts


# -- probing through the appliance ---------------------------------------------------------------
class _Probe:
    """Accumulates the layout objects and the device path → layout id map while probing."""

    def __init__(self, g: Guest, image: str) -> None:
        self.g = g
        self.image = image
        self.ids: dict[str, str] = {}  # appliance path → layout id
        self.sizes: dict[str, int] = {}  # appliance path → bytes
        self.blkids: dict[str, dict[str, str]] = {}
        self.disks: list[Disk] = []
        self.partitions: list[Partition] = []
        self.vgs: list[VolumeGroup] = []
        self.lvs: list[LogicalVolume] = []
        self.lv_kinds: dict[tuple[Any, Any], dict[str, Any] | None] = {}  # (vg, lv) → lv_kind's fields
        self._btrfs: dict[str, btrfs.Listing] = {}

    def blkid(self, dev: str) -> dict[str, str]:
        """blkid's low-level probe of dev (filesystem and partition entry), once per device."""
        if dev not in self.blkids:
            try:
                self.blkids[dev] = {str(k): str(v) for k, v in self.g.blkid(dev).items()}
            except GuestfsError as e:
                log.debug("blkid %s: %s", dev, e)
                self.blkids[dev] = {}
        return self.blkids[dev]

    def add(self, obj: Disk | Partition | LogicalVolume, path: str) -> None:
        self.ids[path] = obj.id
        self.sizes[path] = obj.size
        if isinstance(obj, Disk):
            self.disks.append(obj)
        elif isinstance(obj, Partition):
            self.partitions.append(obj)
        else:
            self.lvs.append(obj)

    def disk(self, dev: str) -> None:
        g = self.g
        try:
            table = TableType(str(g.part_get_parttype(dev)))
        except (GuestfsError, ValueError):
            table = TableType.NONE
        uuid = self.blkid(dev).get("PTUUID", "") if table != TableType.NONE else ""
        size, sector = int(g.blockdev_getsize64(dev)), int(g.blockdev_getss(dev))
        disk = Disk(f"disk-{posixpath.basename(dev)}", dev, size, table, sector, uuid)
        self.add(disk, dev)
        if table != TableType.NONE:
            self.disk_partitions(disk)

    def disk_partitions(self, disk: Disk) -> None:
        g = self.g
        paths = {int(g.part_to_partnum(p)): str(p) for p in g.list_partitions() if g.part_to_dev(p) == disk.path}
        for entry in g.part_list(disk.path):
            num = int(entry["part_num"])
            path = paths.get(num, f"{disk.path}{num}")
            start, size = int(entry["part_start"]), int(entry["part_size"])
            part = Partition(f"part-{posixpath.basename(path)}", disk.id, num, start, size, path=path)
            pe = part_entry(self.blkid(path))
            if pe is None:
                pe = self.gpt_entry(disk, num) if disk.table == TableType.GPT else self.mbr_entry(disk, num)
            if pe.extended:
                log.debug("%s: skipping extended partition %d (a container of logical partitions)", disk.path, num)
                continue
            self.add(
                dataclasses.replace(part, flags=pe.flags, name=pe.name, uuid=pe.uuid, type_uuid=pe.type_uuid), path
            )

    def gpt_entry(self, disk: Disk, num: int) -> PartEntry:
        g = self.g
        type_uuid = str(g.part_get_gpt_type(disk.path, num)).upper()
        name, uuid = str(g.part_get_name(disk.path, num)), str(g.part_get_gpt_guid(disk.path, num)).lower()
        return PartEntry(gpt_flags(type_uuid), name, uuid, type_uuid)

    def mbr_entry(self, disk: Disk, num: int) -> PartEntry:
        g = self.g
        mbr_id = int(g.part_get_mbr_id(disk.path, num))
        flags = mbr_flags(mbr_id, bool(g.part_get_bootable(disk.path, num)))
        uuid = f"{disk.uuid}-{num:02x}" if disk.uuid else ""
        return PartEntry(flags, uuid=uuid, extended=mbr_id in parttypes.MBR_EXTENDED)

    def lvm(self) -> None:
        g = self.g
        # pvs_full's pv_name is LVM's own name for the device, which under load can be the kernel's
        # (/dev/sdb3 when the appliance disk was enumerated first); pvs() gives libguestfs's names
        pv_names = {str(g.pvuuid(dev)).replace("-", ""): str(dev) for dev in g.pvs()}
        lvs = {str(lv["lv_uuid"]).replace("-", ""): lv for lv in g.lvs_full()}
        if lvs:  # their segment types (thin pools, thin LVs), which lvs_full does not give
            rows = parse_lvm_report(g.appliance_command(["lvm", *LVS_KINDS]), "lv")
            self.lv_kinds = {(r.get("vg_name"), r.get("lv_name")): lv_kind(str(r.get("vg_name")), r) for r in rows}
        for vg in sorted(g.vgs_full(), key=lambda v: str(v["vg_name"])):
            name = str(vg["vg_name"])
            pvs = []
            for pv_uuid in g.vgpvuuids(name):
                pv_dev = canonical_device(pv_names.get(str(pv_uuid).replace("-", ""), ""))
                if pv_dev not in self.ids:
                    raise LayoutError(
                        f"VolumeGroup vg-{name}: physical volume {pv_dev or pv_uuid} "
                        "is not on a disk or partition imgclone can describe"
                    )
                pvs.append(self.ids[pv_dev])
            self.vgs.append(
                VolumeGroup(f"vg-{name}", name, tuple(pvs), int(vg["vg_extent_size"]), lvm_uuid(str(vg["vg_uuid"])))
            )
            for lv_uuid in g.vglvuuids(name):
                lv = lvs.get(str(lv_uuid).replace("-", ""))
                if lv is not None:
                    self.lv(name, lv)

    def lv(self, vg: str, lv: Mapping[str, Any]) -> None:
        name = str(lv["lv_name"])
        kind = self.lv_kinds.get((vg, name), {})
        if str(lv["lv_attr"])[:1] in LV_KINDS_SKIPPED or kind is None:
            log.warning("%s/%s: skipping a %r logical volume (imgclone recreates plain and thin ones)", vg, name,
                        lv["lv_attr"])  # fmt: skip
            return
        obj = LogicalVolume(f"lv-{vg}-{name}", name, f"vg-{vg}", int(lv["lv_size"]), lvm_uuid(str(lv["lv_uuid"])),
                            **kind)  # fmt: skip
        self.add(obj, f"/dev/{vg}/{name}")

    def btrfs(self, dev: str) -> btrfs.Listing:
        """The subvolumes of the btrfs on dev, once: it is mounted read-only at / for the asking (nothing else may
        be mounted then), and btrfs-progs lists them from the top level whichever subvolume shows."""
        if dev not in self._btrfs:
            g = self.g
            g.mount_ro(dev, "/")
            try:

                def run(argv: list[str]) -> bytes:
                    return g.appliance_command([*argv, g.sysroot]).encode("utf-8", "surrogateescape")

                btrfs.refuse_multi_device(dev, btrfs.parse_devices(run(btrfs.SHOW).decode()))
                rows = btrfs.parse_list(run(btrfs.LIST))
                readonly = frozenset(r.id for r in btrfs.parse_list(run(btrfs.LIST_READONLY)))
                default = btrfs.parse_default(run(btrfs.GET_DEFAULT).decode())
            except ValueError as e:
                raise LayoutError(f"{dev}: cannot read its btrfs subvolumes: {e}") from e
            finally:
                g.umount_all()
            self._btrfs[dev] = btrfs.Listing(tuple(rows), default, readonly)
        return self._btrfs[dev]

    def signature(self, dev: str) -> tuple[str, str, str]:
        """(type, uuid, label) of what dev holds, as blkid reports them ("" when nothing)."""
        info = self.blkid(dev)
        return info.get("TYPE", ""), info.get("UUID", ""), blkid_value(info.get("LABEL", ""))

    def index(self) -> DeviceIndex:
        uuids: dict[str, str] = {}
        labels: dict[str, str] = {}
        for dev in self.ids:
            vtype, uuid, label = self.signature(dev)
            if vtype in ("", "LVM2_member"):
                continue
            if uuid:
                uuids.setdefault(uuid.lower(), dev)
            if label:
                labels.setdefault(label, dev)
        return DeviceIndex(
            devices=frozenset(self.ids),
            uuids=uuids,
            labels=labels,
            partuuids={p.uuid.lower(): p.path for p in self.partitions if p.uuid},
            partlabels={p.name: p.path for p in self.partitions if p.name},
        )

    def swaps(self, fstab: list[FstabEntry], index: DeviceIndex, taken: set[str]) -> list[Swap]:
        """Swap devices: those the fstab names and any other device holding a swap signature."""
        devices = [d for d in self.ids if self.signature(d)[0] == "swap"]
        for e in fstab:
            if e.vfstype == "swap":
                dev = resolve_spec(e.spec, index)
                if dev is None:
                    log.warning("fstab swap %s: not a device found in the image (a swap file?); skipping", e.spec)
                elif dev not in devices:
                    devices.append(dev)
        swaps = []
        for dev in devices:
            if dev in taken:
                continue
            obj_id = self.ids[dev]
            name = obj_id.removeprefix("lv-") if obj_id.startswith("lv-") else posixpath.basename(dev)
            _, uuid, label = self.signature(dev)
            swaps.append(Swap(f"swap-{name}", obj_id, self.sizes[dev], uuid, label))
            taken.add(dev)
        return swaps

    def device_id(self, dev: str, what: str) -> str:
        canon = canonical_device(dev)
        if canon not in self.ids:
            raise LayoutError(
                f"{what}: {dev} is not a disk, partition or logical volume imgclone can describe",
                f"found in {self.image}",
            )
        return self.ids[canon]


ROOT_TYPES = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs"})


def _is_root(g: Guest) -> bool:
    """Whether the filesystem mounted at / is a Linux system's root: /etc with an fstab or an os-release, and a bin
    directory (a simpler form of what libguestfs's inspection checks, for the types imgclone captures)."""
    marked = g.is_file("/etc/fstab") or g.is_file("/usr/lib/os-release") or g.is_file("/etc/os-release")
    return bool(g.is_dir("/etc") and marked and (g.is_dir("/usr/bin") or g.is_dir("/bin")))


def _find_root(g: Guest, probe: _Probe, image: str) -> tuple[GuestSource, list[FstabEntry]]:
    """The one filesystem of the drives that is a system's root, and its fstab (read while it is mounted): each
    candidate mounted read-only at / in turn; on a btrfs, its default subvolume, then every other subvolume that is
    neither a snapshot nor read-only. (libguestfs's inspect_os answers the same and much more, and took 19–23 s of
    a probe's ~37 under TCG.)"""
    roots: list[tuple[GuestSource, list[FstabEntry]]] = []
    for dev in probe.ids:
        vtype = probe.signature(dev)[0]
        if vtype not in ROOT_TYPES:
            continue
        candidates = [GuestSource("fs-root", dev, "/")]
        if vtype == "btrfs":
            listing = probe.btrfs(dev)
            candidates += [GuestSource("fs-root", dev, "/", r.path) for r in listing.rows
                           if not r.parent_uuid and r.id not in listing.readonly]  # fmt: skip
        for src in candidates:
            try:
                g.mount_ro(src.mountable, "/")
            except GuestfsError as e:
                log.debug("%s: cannot be mounted read-only, not a root: %s", src.mountable, e)
                continue
            try:
                found = _is_root(g)
                if found:
                    roots.append((src, _read_fstab(g)))
            finally:
                g.umount_all()
            if found:
                break
    if not roots:
        raise ImgcloneError(f"no operating system found in {image}", "is it a system disk? try `virt-inspector`")
    if len(roots) > 1:
        raise ImgcloneError(
            f"several operating systems found in {image}: {', '.join(src.mountable for src, _ in roots)}",
            "capture one system at a time: give only that system's disks",
        )
    return roots[0]


def _read_fstab(g: Guest) -> list[FstabEntry]:
    if not g.is_file("/etc/fstab"):
        log.warning("guest has no /etc/fstab: mount options default to 'defaults'")
        return []
    return parse_fstab(bytes(g.read_file("/etc/fstab")).decode("utf-8", "surrogateescape"))


def _filesystem(g: Guest, probe: _Probe, src: GuestSource, options: str) -> Filesystem:
    vtype, uuid, label = probe.signature(src.device)
    try:
        fstype = FsType(vtype)
    except ValueError:
        raise LayoutError(
            f"Filesystem {src.fs_id}: {vtype or 'unknown'} filesystem on {src.device} "
            f"({src.mountpoint}) is not supported"
        ) from None
    st = g.statvfs(src.mountpoint)
    features: dict[str, Any] = {}
    if fstype in fsfeatures.EXT_TYPES:
        features = fsfeatures.ext_features(g.tune2fs_l(src.device))
    elif fstype == FsType.XFS:
        features = xfs_features(g.xfs_info(src.mountpoint), bytes(g.pread_device(src.device, 512, 0)))
    return Filesystem(
        id=src.fs_id,
        device=probe.device_id(src.device, f"Filesystem {src.fs_id}"),
        type=fstype,
        mountpoint=src.mountpoint,
        size=int(st["blocks"]) * int(st["frsize"]),
        used=(int(st["blocks"]) - int(st["bfree"])) * int(st["frsize"]),
        uuid=uuid,
        label=label,
        options=options,
        features=features,
    )


def _sources(probe: _Probe, root: GuestSource, where: Mapping[str, str], fstab: Sequence[FstabEntry]
             ) -> list[GuestSource]:  # fmt: skip
    """What to mount where: the root as found, and each filesystem of the fstab on the drives; a btrfs mount
    shows the subvolume its options name (subvol=), else the default one."""
    options = {posixpath.normpath(e.file): e.options for e in fstab if e.file.startswith("/")}
    sources: list[GuestSource] = []
    used: set[tuple[str, str]] = set()
    for mp in sorted(where, key=mount_key):
        dev = canonical_device(where[mp])
        subvol = root.subvol if mp == "/" else ""
        if mp != "/" and probe.signature(dev)[0] == "btrfs":
            subvol = btrfs.mounted_path(options.get(mp, ""))
        if (dev, subvol) in used:
            log.warning("%s: %s is already mounted elsewhere; skipping", mp, dev)
            continue
        probe.device_id(dev, f"Filesystem {fs_id(mp)} ({mp})")
        used.add((dev, subvol))
        sources.append(GuestSource(fs_id(mp), dev, mp, subvol))
    return sources


def _subvolumes(probe: _Probe, filesystems: Sequence[Filesystem], sources: Sequence[GuestSource],
                options: Mapping[str, str]) -> list[Subvolume]:  # fmt: skip
    """The subvolumes of each btrfs, with the mount of each source that shows one."""
    out: list[Subvolume] = []
    for fs in filesystems:
        if fs.type != FsType.BTRFS:
            continue
        src = next(s for s in sources if s.fs_id == fs.id)
        listing = probe.btrfs(src.device)
        mounts = [btrfs.SubvolMount(s.subvol or listing.path_of(listing.default), s.mountpoint,
                                    options.get(s.mountpoint, "defaults"))
                  for s in sources if s.device == src.device]  # fmt: skip
        out += btrfs.subvolumes(fs.id, listing.rows, listing.default, listing.readonly, mounts)
    return out


def probe_image(g: Guest, drive_paths: Sequence[str]) -> tuple[Layout, list[GuestSource]]:
    """Describe the system on the launched read-only appliance's drives, and where its filesystems are (each
    btrfs subvolume mounted on its own is a source of its own, and one of its filesystem's Subvolumes)."""
    image = ", ".join(drive_paths) or "the image"
    probe = _Probe(g, image)
    for dev in g.list_devices():
        probe.disk(str(dev))
    probe.lvm()
    index = probe.index()
    root, fstab = _find_root(g, probe, image)
    sources = _sources(probe, root, mountpoints(root.device, fstab, index), fstab)
    first = {s.device: s for s in reversed(sources)}  # each device's highest mount: its Filesystem
    options = {e.file: e.options for e in fstab}
    try:
        mount_sources(g, sources)
        filesystems = [_filesystem(g, probe, s, options.get(s.mountpoint, "defaults")) for s in sources
                       if first[s.device] is s]  # fmt: skip
    finally:
        g.umount_all()
    subvolumes = _subvolumes(probe, filesystems, sources, options)
    swaps = probe.swaps(fstab, index, {s.device for s in sources})
    layout = Layout(
        tuple(probe.disks),
        tuple(probe.partitions),
        tuple(probe.vgs),
        tuple(probe.lvs),
        tuple(filesystems),
        tuple(swaps),
        tuple(subvolumes),
    )
    layout.validate()
    return layout, sources
