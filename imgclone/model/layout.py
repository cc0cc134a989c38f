"""The storage layout as data: frozen dataclasses referring to each other by stable ids.

Only `to_dict`/`from_dict` touch raw dicts; `validate()` checks references with
messages that name the object, as curtin does ("LogicalVolume lv-rootvg-var: …").
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from imgclone.errors import LayoutError

LAYOUT_VERSION = 2  # 2: btrfs subvolumes, LVM thin pools and thin LVs (version 1 layouts are read as they are)
READABLE_VERSIONS = (1, 2)


class TableType(StrEnum):
    MSDOS = "msdos"
    GPT = "gpt"
    NONE = "none"  # a filesystem or PV on the whole disk


class PartFlag(StrEnum):
    BOOT = "boot"
    ESP = "esp"
    BIOS_GRUB = "bios_grub"
    LVM = "lvm"
    SWAP = "swap"


class FsType(StrEnum):
    EXT2 = "ext2"
    EXT3 = "ext3"
    EXT4 = "ext4"
    XFS = "xfs"
    BTRFS = "btrfs"
    VFAT = "vfat"


@dataclass(frozen=True)
class Disk:
    id: str
    path: str  # where it was found: /dev/sda, or the image's device inside the appliance
    size: int
    table: TableType = TableType.MSDOS
    sector_size: int = 512
    uuid: str = ""  # partition table id (PTUUID)


@dataclass(frozen=True)
class Partition:
    id: str
    disk: str
    number: int
    start: int  # bytes
    size: int  # bytes
    flags: tuple[PartFlag, ...] = ()
    name: str = ""  # GPT partition name
    uuid: str = ""  # PARTUUID
    type_uuid: str = ""  # GPT partition type GUID
    path: str = ""


@dataclass(frozen=True)
class VolumeGroup:
    id: str
    name: str
    pvs: tuple[str, ...]  # ids of partitions or whole disks
    extent_size: int = 4 * 1024 * 1024
    uuid: str = ""


class LvKind(StrEnum):
    """LVM's segment type of a logical volume, as `lvs -o segtype` names it (the kinds imgclone recreates)."""

    LINEAR = "linear"
    THIN_POOL = "thin-pool"
    THIN = "thin"


@dataclass(frozen=True)
class LogicalVolume:
    id: str
    name: str
    vg: str
    size: int  # a thin LV's virtual size; a pool's data size
    uuid: str = ""
    kind: LvKind = LvKind.LINEAR
    pool: str = ""  # a thin LV's pool (the id of a thin-pool LV in the same VG)
    chunk_size: int = 0  # a pool's chunk size in bytes (0: LVM chooses)
    metadata_size: int = 0  # a pool's metadata LV size in bytes (0: LVM chooses)


@dataclass(frozen=True)
class Filesystem:
    id: str
    device: str  # id of a partition, LV or disk
    type: FsType
    mountpoint: str
    size: int
    used: int = 0
    uuid: str = ""
    label: str = ""
    options: str = "defaults"
    # type-specific: ext features (["has_journal", "extent", …]), xfs parameters, btrfs …
    features: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Subvolume:
    """A btrfs subvolume. The Filesystem is the whole btrfs; its mountpoint is where the subvolume mounted
    highest in the tree is (/ for `@`), and each subvolume mounted on its own says where and with which
    options. A subvolume nested in a mounted one (`@/.snapshots`) shows inside it and needs no mount."""

    id: str
    filesystem: str  # id of the btrfs Filesystem
    path: str  # from the top level (subvolume id 5): "@", "@home", "@/.snapshots/1/snapshot"
    mountpoint: str = ""  # "" when not mounted on its own
    options: str = ""  # the mount's options, subvol= included (fstab's, else the running mount's)
    default: bool = False  # `btrfs subvolume get-default`: what a mount without subvol= shows
    readonly: bool = False
    snapshot: bool = False  # a snapshot of another subvolume (it has a parent uuid)
    source_id: int = 0  # its id on the source; a restore gets new ids


@dataclass(frozen=True)
class Swap:
    id: str
    device: str
    size: int
    uuid: str = ""
    label: str = ""


@dataclass(frozen=True)
class Layout:
    disks: tuple[Disk, ...] = ()
    partitions: tuple[Partition, ...] = ()
    vgs: tuple[VolumeGroup, ...] = ()
    lvs: tuple[LogicalVolume, ...] = ()
    filesystems: tuple[Filesystem, ...] = ()
    swaps: tuple[Swap, ...] = ()
    subvolumes: tuple[Subvolume, ...] = ()
    version: int = LAYOUT_VERSION

    # -- lookups ---------------------------------------------------------------------------
    def objects(self) -> Iterable[LayoutObject]:
        yield from self.disks
        yield from self.partitions
        yield from self.vgs
        yield from self.lvs
        yield from self.filesystems
        yield from self.swaps
        yield from self.subvolumes

    def get(self, obj_id: str) -> LayoutObject:
        for o in self.objects():
            if o.id == obj_id:
                return o
        raise KeyError(obj_id)

    def filesystem_at(self, mountpoint: str) -> Filesystem | None:
        return next((f for f in self.filesystems if f.mountpoint == mountpoint), None)

    def mount_order(self) -> list[Filesystem]:
        """Filesystems parents first (/ before /var before /var/log)."""
        return sorted(self.filesystems, key=lambda f: mount_key(f.mountpoint))

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def one(o: Any) -> dict[str, Any]:
            d = dataclasses.asdict(o)
            for k, v in d.items():
                if isinstance(v, tuple):
                    d[k] = [str(x) for x in v]
                elif isinstance(v, StrEnum):
                    d[k] = str(v)
            return d

        return {
            "version": self.version,
            "disks": [one(o) for o in self.disks],
            "partitions": [one(o) for o in self.partitions],
            "vgs": [one(o) for o in self.vgs],
            "lvs": [one(o) for o in self.lvs],
            "filesystems": [one(o) for o in self.filesystems],
            "swaps": [one(o) for o in self.swaps],
            "subvolumes": [one(o) for o in self.subvolumes],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Layout:
        if not isinstance(d, Mapping):
            raise LayoutError("layout: expected a JSON object")
        version = d.get("version")
        if version not in READABLE_VERSIONS:
            raise LayoutError(
                f"layout: unsupported version {version!r}",
                f"this imgclone reads versions {', '.join(map(str, READABLE_VERSIONS))}; use a newer imgclone for"
                " newer layouts",
            )
        try:
            return cls(
                disks=tuple(_make(Disk, o, table=TableType) for o in d.get("disks", [])),
                partitions=tuple(
                    _make(Partition, o, flags=lambda v: tuple(PartFlag(x) for x in v)) for o in d.get("partitions", [])
                ),
                vgs=tuple(_make(VolumeGroup, o, pvs=tuple) for o in d.get("vgs", [])),
                lvs=tuple(_make(LogicalVolume, o, kind=LvKind) for o in d.get("lvs", [])),
                filesystems=tuple(_make(Filesystem, o, type=FsType, features=dict) for o in d.get("filesystems", [])),
                swaps=tuple(_make(Swap, o) for o in d.get("swaps", [])),
                subvolumes=tuple(_make(Subvolume, o) for o in d.get("subvolumes", [])),
                version=LAYOUT_VERSION,
            )
        except (TypeError, ValueError) as e:
            raise LayoutError(f"layout: {e}") from e

    @classmethod
    def from_json(cls, text: str, source: str = "layout") -> Layout:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise LayoutError(f"{source}: not valid JSON: {e}") from e
        return cls.from_dict(d)

    # -- validation -----------------------------------------------------------------------
    def validate(self) -> None:
        """Raise LayoutError listing every inconsistency, each naming its object."""
        problems = list(self.problems())
        if problems:
            raise LayoutError("; ".join(problems))

    def problems(self) -> Iterable[str]:
        kinds: dict[str, str] = {}
        for o in self.objects():
            kind = type(o).__name__
            if not o.id:
                yield f"{kind}: empty id"
            elif o.id in kinds:
                yield f"{kind} {o.id}: duplicate id (also a {kinds[o.id]})"
            kinds[o.id] = kind

        def ref(owner: str, what: str, target: str, allowed: tuple[str, ...]) -> Iterable[str]:
            if target not in kinds:
                yield f"{owner}: {what} {target} does not exist"
            elif kinds[target] not in allowed:
                yield f"{owner}: {what} {target} is a {kinds[target]}, expected {' or '.join(allowed)}"

        for p in self.partitions:
            yield from ref(f"Partition {p.id}", "disk", p.disk, ("Disk",))
            if p.size <= 0 or p.start < 0:
                yield f"Partition {p.id}: start {p.start} and size {p.size} must be positive"
        for disk in self.disks:
            parts = sorted((p for p in self.partitions if p.disk == disk.id), key=lambda p: p.start)
            for a, b in zip(parts, parts[1:], strict=False):
                if a.start + a.size > b.start:
                    yield f"Partition {b.id}: overlaps partition {a.id}"
            for p in parts:
                if p.start + p.size > disk.size:
                    yield f"Partition {p.id}: ends beyond the end of disk {disk.id} ({disk.size} bytes)"
        for vg in self.vgs:
            if not vg.pvs:
                yield f"VolumeGroup {vg.id}: has no physical volumes"
            ext = vg.extent_size
            if not isinstance(ext, int) or ext < 1024 or (ext & (ext - 1) and ext % (128 * 1024)):
                takes = "a power of 2 ≥ 1 KiB, or a multiple of 128 KiB"
                yield f"VolumeGroup {vg.id}: extent size {ext!r} is not one LVM takes ({takes})"
            for pv in vg.pvs:
                yield from ref(f"VolumeGroup {vg.id}", "physical volume", pv, ("Partition", "Disk"))
        for lv in self.lvs:
            yield from ref(f"LogicalVolume {lv.id}", "volume group", lv.vg, ("VolumeGroup",))
            if lv.size <= 0:
                yield f"LogicalVolume {lv.id}: size must be positive"
            yield from self._thin_problems(lv)
        users: dict[str, str] = {}
        devices = ("Partition", "LogicalVolume", "Disk")
        for vg in self.vgs:
            for pv in vg.pvs:
                users.setdefault(pv, f"VolumeGroup {vg.id}")
        for fs in self.filesystems:
            yield from ref(f"Filesystem {fs.id}", "device", fs.device, devices)
            if not fs.mountpoint.startswith("/"):
                yield f"Filesystem {fs.id}: mount point {fs.mountpoint!r} is not absolute"
            if fs.device in users:
                yield f"Filesystem {fs.id}: device {fs.device} is already used by {users[fs.device]}"
            users.setdefault(fs.device, f"Filesystem {fs.id}")
        for sw in self.swaps:
            yield from ref(f"Swap {sw.id}", "device", sw.device, devices)
            if sw.device in users:
                yield f"Swap {sw.id}: device {sw.device} is already used by {users[sw.device]}"
            users.setdefault(sw.device, f"Swap {sw.id}")
        for pool in sorted({lv.pool for lv in self.lvs if lv.pool}):
            if pool in users:
                yield f"LogicalVolume {pool}: a thin pool cannot hold a filesystem or swap ({users[pool]})"
        seen: dict[str, str] = {}
        for fs in self.filesystems:
            if fs.mountpoint in seen:
                yield f"Filesystem {fs.id}: mount point {fs.mountpoint} is also used by {seen[fs.mountpoint]}"
            seen[fs.mountpoint] = fs.id
        for sv in self.subvolumes:
            yield from ref(f"Subvolume {sv.id}", "filesystem", sv.filesystem, ("Filesystem",))
        yield from self._subvolume_problems(seen)

    def _thin_problems(self, lv: LogicalVolume) -> Iterable[str]:
        what = f"LogicalVolume {lv.id}"
        if lv.kind == LvKind.THIN:
            pool = next((p for p in self.lvs if p.id == lv.pool), None)
            if pool is None or pool.kind != LvKind.THIN_POOL:
                yield f"{what}: a thin LV needs a thin pool, and {lv.pool or 'none'} is not one"
            elif pool.vg != lv.vg:
                yield f"{what}: its pool {pool.id} is in another volume group ({pool.vg})"
        elif lv.pool:
            yield f"{what}: only a thin LV has a pool ({lv.kind} LV with pool {lv.pool})"
        if lv.kind != LvKind.THIN_POOL and (lv.chunk_size or lv.metadata_size):
            yield f"{what}: chunk and metadata sizes belong to thin pools"
        if lv.chunk_size and (lv.chunk_size % (64 * 1024) or lv.chunk_size > 1024**3):
            yield f"{what}: chunk size {lv.chunk_size} is not one LVM takes (a multiple of 64 KiB up to 1 GiB)"

    def _subvolume_problems(self, mounts: Mapping[str, str]) -> Iterable[str]:
        """What problems() cannot check by reference: the filesystem's type, paths, one default, mount points."""
        paths: set[tuple[str, str]] = set()
        defaults: dict[str, str] = {}
        seen: dict[str, str] = {}
        for sv in self.subvolumes:
            what = f"Subvolume {sv.id}"
            fs = next((f for f in self.filesystems if f.id == sv.filesystem), None)
            if fs is not None and fs.type != FsType.BTRFS:
                yield f"{what}: filesystem {fs.id} is {fs.type}, not btrfs"
            if not sv.path or sv.path.startswith("/") or ".." in sv.path.split("/"):
                yield f"{what}: path {sv.path!r} must be relative to the top level, without .."
            if (sv.filesystem, sv.path) in paths:
                yield f"{what}: path {sv.path} is also another subvolume's"
            paths.add((sv.filesystem, sv.path))
            if sv.default:
                if sv.filesystem in defaults:
                    yield f"{what}: {defaults[sv.filesystem]} is the default subvolume already"
                defaults[sv.filesystem] = sv.id
            if not sv.mountpoint:
                continue
            if not sv.mountpoint.startswith("/"):
                yield f"{what}: mount point {sv.mountpoint!r} is not absolute"
            elif mounts.get(sv.mountpoint, sv.filesystem) != sv.filesystem:
                yield f"{what}: mount point {sv.mountpoint} is also used by {mounts[sv.mountpoint]}"
            elif sv.mountpoint in seen:
                yield f"{what}: mount point {sv.mountpoint} is also used by {seen[sv.mountpoint]}"
            seen.setdefault(sv.mountpoint, sv.id)

    def subvolumes_of(self, fs_id: str) -> list[Subvolume]:
        """A btrfs filesystem's subvolumes, parents first (by path)."""
        return sorted((s for s in self.subvolumes if s.filesystem == fs_id), key=lambda s: (s.path.count("/"), s.path))


LayoutObject = Disk | Partition | VolumeGroup | LogicalVolume | Filesystem | Swap | Subvolume


def _make(cls: type[Any], raw: Any, **convert: Any) -> Any:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{cls.__name__}: expected an object, got {raw!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ValueError(f"{cls.__name__} {raw.get('id', '?')}: unknown field(s) {', '.join(sorted(unknown))}")
    kwargs = {k: (convert[k](v) if k in convert else v) for k, v in raw.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"{cls.__name__} {raw.get('id', '?')}: {e}") from e


def mount_key(mountpoint: str) -> tuple[int, str]:
    """Sort key of mount points that mounts parents first (/ before /var before /var/log)."""
    return (mountpoint.rstrip("/").count("/"), mountpoint)


def fs_id(mountpoint: str) -> str:
    """Readable stable id of the filesystem mounted at mountpoint: / → fs-root, /boot/efi → fs-boot-efi."""
    tail = re.sub(r"[^A-Za-z0-9._-]", "_", mountpoint.strip("/").replace("/", "-"))
    return "fs-" + (tail or "root")
