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

LAYOUT_VERSION = 1


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


@dataclass(frozen=True)
class LogicalVolume:
    id: str
    name: str
    vg: str
    size: int
    uuid: str = ""


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
    version: int = LAYOUT_VERSION

    # -- lookups ---------------------------------------------------------------------------
    def objects(self) -> Iterable[Disk | Partition | VolumeGroup | LogicalVolume | Filesystem | Swap]:
        yield from self.disks
        yield from self.partitions
        yield from self.vgs
        yield from self.lvs
        yield from self.filesystems
        yield from self.swaps

    def get(self, obj_id: str) -> Disk | Partition | VolumeGroup | LogicalVolume | Filesystem | Swap:
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
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Layout:
        if not isinstance(d, Mapping):
            raise LayoutError("layout: expected a JSON object")
        version = d.get("version")
        if version != LAYOUT_VERSION:
            raise LayoutError(
                f"layout: unsupported version {version!r}",
                f"this imgclone reads version {LAYOUT_VERSION}; use a newer imgclone for newer layouts",
            )
        try:
            return cls(
                disks=tuple(_make(Disk, o, table=TableType) for o in d.get("disks", [])),
                partitions=tuple(
                    _make(Partition, o, flags=lambda v: tuple(PartFlag(x) for x in v)) for o in d.get("partitions", [])
                ),
                vgs=tuple(_make(VolumeGroup, o, pvs=tuple) for o in d.get("vgs", [])),
                lvs=tuple(_make(LogicalVolume, o) for o in d.get("lvs", [])),
                filesystems=tuple(_make(Filesystem, o, type=FsType, features=dict) for o in d.get("filesystems", [])),
                swaps=tuple(_make(Swap, o) for o in d.get("swaps", [])),
                version=version,
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
        seen: dict[str, str] = {}
        for fs in self.filesystems:
            if fs.mountpoint in seen:
                yield f"Filesystem {fs.id}: mount point {fs.mountpoint} is also used by {seen[fs.mountpoint]}"
            seen[fs.mountpoint] = fs.id


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
