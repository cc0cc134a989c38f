"""Probe the storage layout of this host for `imgclone capture` (the mksysb half): findmnt, lsblk,
LVM's JSON reports, `blkid -p` (when lsblk has no udev data), pyparted, dumpe2fs and xfs_info.

This module asks and assembles the layout; host_parsers.py holds the commands and parses their output.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from imgclone.errors import CommandError, ImgcloneError, UsageError
from imgclone.fs import features as fsfeatures
from imgclone.host.reports import LVM_ENV, parse_dumpe2fs, parse_lvm_report
from imgclone.host.run import HOST, Runner
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
)
from imgclone.probe import btrfs
from imgclone.probe.host_parsers import (
    FINDMNT,
    LSBLK,
    LVS,
    PVS,
    TABLE_TYPES,
    BlockDev,
    Mount,
    as_int,
    flags_from_type,
    lv_kind,
    parse_blkid,
    parse_findmnt,
    parse_lsblk,
    parse_xfs_info,
)
from imgclone.probe.host_table import ReadTable, TableEntry, read_partition_table

log = logging.getLogger("imgclone")

FS_TYPES = {str(t) for t in FsType}
DEVICE_TYPES = {"disk", "loop", "part", "lvm"}  # what the layout can describe
SWAP_MARK = "[SWAP]"  # lsblk's mount point for an active swap device


@dataclass(frozen=True)
class Source:
    """One filesystem to capture on the host."""

    fs_id: str  # Filesystem.id in the layout
    mountpoint: str  # where it is mounted now on the host (what tar reads)


def _number_from_name(name: str) -> int:
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else 0


# -- the host ----------------------------------------------------------------------------------
class _Host:
    """What findmnt, lsblk and LVM say about this host, and the layout objects built from it."""

    def __init__(self, runner: Runner, read_table: ReadTable) -> None:
        self.runner = runner
        self.read_table = read_table
        self.mounts = parse_findmnt(runner.run(FINDMNT).text)
        self.devs = parse_lsblk(runner.run(LSBLK).text)
        self._blkid: dict[str, dict[str, str]] = {}
        self.subvol_mounts: list[Mount] = []  # btrfs mounts of a filesystem picked at another mount point

    # pvs and lvs take about 0.1 s: asked only where LVM can be (lvm_under)
    @cached_property
    def pv_rows(self) -> list[dict[str, str]]:
        return self._lvm(PVS, "pv")

    @cached_property
    def lv_rows(self) -> list[dict[str, str]]:
        return self._lvm(LVS, "lv")

    def _lvm(self, argv: list[str], kind: str) -> list[dict[str, str]]:
        try:
            res = self.runner.run(argv, check=False, env=LVM_ENV)
        except CommandError as e:  # lvm2 not installed
            log.debug("%s: %s", argv[0], e)
            return []
        rows = parse_lvm_report(res.text, kind)
        if res.returncode != 0 and not rows:
            log.debug("%s: no LVM here (exit code %d)", argv[0], res.returncode)
        return rows

    def info(self, dev: BlockDev) -> dict[str, str]:
        """lsblk's identity columns, completed by `blkid -p` (lsblk's come from udev, maybe absent)."""
        if dev.name not in self._blkid:
            res = self.runner.run(["blkid", "-p", "-o", "export", dev.name], check=False)
            self._blkid[dev.name] = parse_blkid(res.text) if res.returncode == 0 else {}
        return {**self._blkid[dev.name], **dev.props}

    def mount_at(self, target: str) -> Mount | None:
        found = [m for m in self.mounts if m.target == target]
        return found[-1] if found else None  # the last one mounted there is the one visible

    def dev_of(self, m: Mount) -> BlockDev | None:
        by_name = (d for d in self.devs.values() if m.source and m.source in (d.name, d.kname))
        found = next(by_name, None)
        if found is None and m.majmin and not m.majmin.startswith("0:"):  # /dev/root; 0:x: btrfs, tmpfs
            found = next((d for d in self.devs.values() if d.majmin == m.majmin), None)
        return found

    def unsupported(self, dev: BlockDev) -> BlockDev | None:
        """The first device under dev (dev included) that the layout cannot describe."""
        if dev.type not in DEVICE_TYPES or (dev.type in ("disk", "loop") and dev.parents):
            return dev
        return next((u for p in dev.parents if (u := self.unsupported(self.devs[p]))), None)

    def top_disks(self, name: str) -> set[str]:
        dev = self.devs[name]
        return set().union(*(self.top_disks(p) for p in dev.parents)) if dev.parents else {name}

    def lvm_under(self, disks: set[str]) -> bool:
        """Whether a device on these disks is, or may be, an LV or a PV: a PV always carries the LVM2_member
        signature, which lsblk's FSTYPE or else blkid's low-level probe names; a device neither of them can
        name (no udev, blkid not allowed to read it, an empty partition) may be one."""
        for dev in self.devs.values():
            if dev.type == "lvm":
                if self.top_disks(dev.name) & disks:
                    return True
            elif self.top_disks(dev.name) <= disks:
                known = dev.props if dev.props.get("fstype") or dev.props.get("pttype") else self.info(dev)
                if known.get("fstype", "LVM2_member") == "LVM2_member" and not known.get("pttype"):
                    return True
        return False

    def closure(self, seeds: Iterable[str]) -> set[str]:
        """The disks under seeds, plus the disks of every VG that has a PV on one of them."""
        disks: set[str] = set().union(*(self.top_disks(s) for s in seeds))
        if not self.lvm_under(disks):
            return disks
        while True:
            vgs = self.vgs_on(disks)
            more = set().union(*(self._pv_disks(r) for r in self.pv_rows if r.get("vg_name") in vgs))
            if more <= disks:
                return disks
            disks |= more

    def vgs_on(self, disks: set[str]) -> set[str]:
        if not self.lvm_under(disks):
            return set()
        return {r["vg_name"] for r in self.pv_rows if r.get("vg_name") and self._pv_disks(r) & disks}

    def _pv_disks(self, row: dict[str, str]) -> set[str]:
        name = row.get("pv_name", "")
        return self.top_disks(name) if name in self.devs else {name}

    def lv_row(self, dev: BlockDev) -> dict[str, str] | None:
        for r in self.lv_rows:
            majmin = f"{r.get('lv_kernel_major')}:{r.get('lv_kernel_minor')}"
            if r.get("lv_dm_path") in (dev.name, dev.kname) or majmin == dev.majmin:
                return r
        return None

    def dev_id(self, dev: BlockDev) -> str:
        """The layout id of the disk, partition or LV dev."""
        if dev.type == "part":
            return "part-" + os.path.basename(dev.name)
        if dev.type in ("disk", "loop") and not dev.parents:
            return "disk-" + os.path.basename(dev.name)
        if dev.type == "lvm":
            row = self.lv_row(dev)
            if row is None:
                raise ImgcloneError(f"{dev.name}: LVM reports nothing about this logical volume", _LVM_HINT)
            return f"lv-{row['vg_name']}-{row['lv_name']}"
        raise ImgcloneError(f"{dev.name}: a {dev.type} device, which imgclone cannot capture", _DEV_HINT)

    # -- layout objects ----------------------------------------------------------------------
    def disk(self, name: str) -> tuple[Disk, list[Partition]]:
        dev, info = self.devs[name], self.info(self.devs[name])
        parts = [self.devs[c] for c in dev.children if self.devs[c].type == "part"]
        whole_fs = info.get("fstype") and not info.get("pttype") and not parts  # a filesystem on the whole disk
        table = None if whole_fs else self.read_table(dev.name)  # libparted probes and flushes: 0.05 s or more
        if table is not None:
            ttype = table.type
        elif info.get("pttype", "") in TABLE_TYPES:
            ttype = TABLE_TYPES[info["pttype"]]
        elif parts or info.get("pttype"):
            what = info.get("pttype") or "unknown"
            raise ImgcloneError(f"{dev.name}: cannot read its partition table (type {what})", _PT_HINT)
        else:
            ttype = TableType.NONE
        sector = table.sector_size if table else dev.log_sec
        disk = Disk(self.dev_id(dev), dev.name, dev.size, ttype, sector, info.get("ptuuid", ""))
        entries = {e.number: e for e in table.entries} if table else {}
        partitions = [p for c in parts if (p := self.partition(c, disk, entries))]
        return disk, sorted(partitions, key=lambda p: p.number)

    def partition(self, dev: BlockDev, disk: Disk, entries: dict[int, TableEntry]) -> Partition | None:
        info = self.info(dev)
        number = as_int(info.get("partn")) or _number_from_name(dev.name)
        parttype = info.get("parttype", "")
        e = entries.get(number)
        if (e.extended if e else as_int(parttype) in parttypes.MBR_EXTENDED) and disk.table == TableType.MSDOS:
            return None
        return Partition(
            id=self.dev_id(dev),
            disk=disk.id,
            number=number,
            start=e.start if e else (as_int(info.get("offset")) or dev.start) * 512,
            size=e.size if e else dev.size,
            flags=e.flags if e else flags_from_type(disk.table, parttype, info.get("partflags", "")),
            name=(e.name if e else "") or info.get("partlabel", ""),
            uuid=info.get("partuuid", ""),
            type_uuid=parttype if disk.table == TableType.GPT else "",
            path=dev.name,
        )

    def volume_groups(self, disks: set[str]) -> tuple[list[VolumeGroup], list[LogicalVolume]]:
        vgs, lvs = [], []
        for vg in sorted(self.vgs_on(disks)):
            rows = [r for r in self.pv_rows if r.get("vg_name") == vg]
            missing = [r["pv_name"] for r in rows if r.get("pv_name") not in self.devs]
            if missing:
                raise ImgcloneError(f"volume group {vg}: physical volume {missing[0]} is not a block device", _LVM_HINT)
            pvs = tuple(self.dev_id(self.devs[r["pv_name"]]) for r in rows)
            extent = as_int(rows[0].get("vg_extent_size")) or 4 * 1024 * 1024
            vgs.append(VolumeGroup(f"vg-{vg}", vg, pvs, extent, rows[0].get("vg_uuid", "")))
            rows = sorted((r for r in self.lv_rows if r.get("vg_name") == vg), key=lambda r: r["lv_name"])
            lvs += [lv for lv in (_lv(vg, r) for r in rows) if lv is not None]
        return vgs, lvs

    def filesystem(self, mountpoint: str, m: Mount, dev: BlockDev) -> Filesystem:
        info = dict(self.info(dev))
        fstype = FsType(m.fstype)
        features: dict[str, Any] = {}
        if fstype in (FsType.EXT2, FsType.EXT3, FsType.EXT4):
            fields = self._tool(["dumpe2fs", "-h", dev.name], parse_dumpe2fs)
            features = fsfeatures.ext_features(fields) if fields else {}
            info.setdefault("uuid", fields.get("Filesystem UUID", ""))
            label = fields.get("Filesystem volume name", "")
            info.setdefault("label", "" if label == "<none>" else label)
        elif fstype == FsType.XFS:
            features = self._tool(["xfs_info", m.target], parse_xfs_info)
        return Filesystem(
            id=fs_id(mountpoint),
            device=self.dev_id(dev),
            type=fstype,
            mountpoint=mountpoint,
            size=m.size,
            used=m.used,
            uuid=info.get("uuid", ""),
            label=info.get("label", ""),
            options=m.options or "defaults",
            features=features,
        )

    def _tool(self, argv: list[str], parse: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
        try:
            res = self.runner.run(argv, check=False)
        except CommandError as e:  # not installed
            err = str(e)
        else:
            if res.returncode == 0:
                return parse(res.text)
            err = (res.stderr.strip().splitlines() or [f"exit code {res.returncode}"])[-1]
        log.warning("%s: cannot read the filesystem features (%s): %s", argv[-1], argv[0], err)
        return {}

    def build(self, picked: list[tuple[str, Mount, BlockDev]], swaps: list[BlockDev]) -> tuple[Layout, list[Source]]:
        """The layout of the picked filesystems and swaps, with every disk, partition, VG, LV under them."""
        disks = self.closure([d.name for _, _, d in picked] + [d.name for d in swaps])
        built = [self.disk(name) for name in sorted(disks)]
        vgs, lvs = self.volume_groups(disks)
        layout = Layout(
            disks=tuple(d for d, _ in built),
            partitions=tuple(p for _, parts in built for p in parts),
            vgs=tuple(vgs),
            lvs=tuple(lvs),
            filesystems=tuple(self.filesystem(mp, m, dev) for mp, m, dev in picked),
            swaps=tuple(self.swap(d) for d in sorted(swaps, key=lambda d: d.name)),
            subvolumes=tuple(sv for mp, m, _ in picked if m.fstype == "btrfs" for sv in self.subvolumes(mp, m)),
        )
        layout.validate()
        return layout, [Source(fs_id(mp), m.target) for mp, m, _ in picked]

    def subvolumes(self, mountpoint: str, m: Mount) -> tuple[Subvolume, ...]:
        """The subvolumes of the btrfs mounted at m (none: a btrfs without subvolumes), with each mount of it."""
        try:
            btrfs.refuse_multi_device(mountpoint, btrfs.parse_devices(self.runner.run([*btrfs.SHOW, m.target]).text))
            listing = [self.runner.run([*argv, m.target]).stdout for argv in (btrfs.LIST, btrfs.LIST_READONLY)]
            rows, readonly = btrfs.parse_list(listing[0]), btrfs.parse_list(listing[1])
            default = btrfs.parse_default(self.runner.run([*btrfs.GET_DEFAULT, m.target]).text)
        except (CommandError, ValueError) as e:
            what = f"{mountpoint}: cannot list its btrfs subvolumes: {e}"
            raise ImgcloneError(what, "is btrfs-progs installed?") from e
        same = [m, *(o for o in self.subvol_mounts if o.majmin == m.majmin and o.source == m.source)]
        mounts = [btrfs.SubvolMount(btrfs.mounted_path(o.options, o.fsroot), o.target, o.options) for o in same]
        return btrfs.subvolumes(fs_id(mountpoint), rows, default, [r.id for r in readonly], mounts)

    def swap(self, dev: BlockDev) -> Swap:
        info, swap_id = self.info(dev), "swap-" + os.path.basename(dev.name)
        return Swap(swap_id, self.dev_id(dev), dev.size, info.get("uuid", ""), info.get("label", ""))


def _lv(vg: str, row: dict[str, str]) -> LogicalVolume | None:
    name, kind = row["lv_name"], lv_kind(vg, row)
    if kind is None:
        log.warning("%s/%s: skipping a %s logical volume (imgclone recreates plain and thin ones)", vg, name,
                    row.get("segtype"))  # fmt: skip
        return None
    return LogicalVolume(f"lv-{vg}-{name}", name, f"vg-{vg}", as_int(row.get("lv_size")), row.get("lv_uuid", ""),
                         **kind)  # fmt: skip


_LVM_HINT = "is lvm2 installed, and do `pvs` and `lvs` work?"
_DEV_HINT = "imgclone captures filesystems on disks, partitions and LVM logical volumes"
_PT_HINT = "imgclone handles msdos and gpt partition tables"
_FS_HINT = "imgclone captures " + ", ".join(sorted(FS_TYPES)) + " filesystems"


# -- public API --------------------------------------------------------------------------------
def probe_running(
    runner: Runner = HOST, *, read_table: ReadTable = read_partition_table
) -> tuple[Layout, list[Source]]:
    """The running system's layout: every filesystem and swap on the disks and VGs that hold /."""
    host = _Host(runner, read_table)
    root = host.mount_at("/")
    rdev = host.dev_of(root) if root else None
    if root is None or rdev is None or root.fstype not in FS_TYPES:
        what = f"{root.fstype} on {root.source}" if root else "nothing"
        raise ImgcloneError(f"/: {what} is not a block-device filesystem imgclone can capture", _FS_HINT)
    bad = host.unsupported(rdev)
    if bad is not None:
        raise ImgcloneError(f"/: on {bad.name}, a {bad.type} device, which imgclone cannot capture", _DEV_HINT)
    disks = host.closure([rdev.name])
    on_disks = {name for name in host.devs if host.top_disks(name) <= disks}
    picked: list[tuple[str, Mount, BlockDev]] = []
    for m in host.mounts:
        dev = host.dev_of(m)
        if dev is None or dev.name not in on_disks or host.mount_at(m.target) is not m:  # hidden by a later mount
            continue
        if m.fstype == "btrfs" and any(d.name == dev.name for _, _, d in picked):
            host.subvol_mounts.append(m)  # another subvolume of a btrfs already picked
            continue
        why = _skip_reason(host, m, dev, {d.name for _, _, d in picked})
        if why:
            (log.debug if why.startswith("(") else log.warning)("%s: not captured: %s", m.target, why)
            continue
        picked.append((m.target, m, dev))
    swaps = [host.devs[name] for name in sorted(on_disks) if SWAP_MARK in host.devs[name].mountpoints]
    swaps = [d for d in swaps if host.unsupported(d) is None]
    return host.build(picked, swaps)


def _skip_reason(host: _Host, m: Mount, dev: BlockDev, taken: set[str]) -> str:
    """Why probe_running leaves mount m out; "" to capture it, "(…)" for the expected cases."""
    if dev.name in taken:
        return "(mounted again)"
    if m.fsroot != "/" and m.fstype != "btrfs":
        return f"(a bind mount of {m.fsroot})"
    if m.fstype not in FS_TYPES:
        return f"{m.fstype} filesystems cannot be captured"
    bad = host.unsupported(dev)
    return f"on {bad.name}, a {bad.type} device" if bad else ""


def probe_mounts(
    mountpoints: Sequence[str], runner: Runner = HOST, *, read_table: ReadTable = read_partition_table
) -> tuple[Layout, list[Source]]:
    """The layout of exactly the filesystems mounted at mountpoints, with the devices under them."""
    if not mountpoints:
        raise UsageError("no mount point given", hint="use --mount DIR, once per filesystem")
    host = _Host(runner, read_table)
    picked: list[tuple[str, Mount, BlockDev]] = []
    given: dict[str, str] = {}  # device → the --mount that named it
    for arg in mountpoints:
        mp = os.path.normpath(os.path.abspath(arg))
        if any(p[0] == mp for p in picked):
            continue
        m, dev = _mounted(host, arg, mp)
        if dev.name in given:
            raise UsageError(f"--mount {arg}: the same filesystem as --mount {given[dev.name]}")
        given[dev.name] = arg
        picked.append((mp, m, dev))
    return host.build(picked, [])


def used_inodes(sources: Iterable[Source]) -> dict[str, int]:
    """fs id → inodes in use on each source filesystem (statvfs): at most what its files need on the clone (the
    exclude rules only take some away), known before the capture writes a byte. vfat and btrfs have no fixed inode
    table (statvfs says 0): left out."""
    counts: dict[str, int] = {}
    for s in sources:
        st = os.statvfs(s.mountpoint)
        if st.f_files:
            counts[s.fs_id] = st.f_files - st.f_ffree
    return counts


def _mounted(host: _Host, arg: str, mp: str) -> tuple[Mount, BlockDev]:
    """The mount at mp and its device, or a UsageError naming --mount arg."""
    m = host.mount_at(mp) or host.mount_at(os.path.realpath(mp))
    if m is None:
        raise UsageError(f"--mount {arg}: not a mount point", hint="give a directory with a filesystem mounted")
    if m.fstype not in FS_TYPES:
        raise UsageError(f"--mount {arg}: {m.fstype} filesystems cannot be captured", hint=_FS_HINT)
    if m.fsroot != "/" and m.fstype != "btrfs":
        hint = "give the directory where the filesystem itself is mounted"
        raise UsageError(f"--mount {arg}: a bind mount of {m.fsroot} on {m.source}", hint=hint)
    dev = host.dev_of(m)
    if dev is None:
        raise UsageError(f"--mount {arg}: {m.source} is not a block device lsblk knows", hint=_DEV_HINT)
    bad = host.unsupported(dev)
    if bad is not None:
        raise UsageError(f"--mount {arg}: on {bad.name}, a {bad.type} device", hint=_DEV_HINT)
    return m, dev
