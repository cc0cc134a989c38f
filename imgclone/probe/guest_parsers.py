"""What the appliance reports of an image, parsed (pure, tested without an appliance): the guest's fstab and the
devices its specs name, partition entries and their flags, LVM's UUIDs, xfs's superblock features."""

from __future__ import annotations

import logging
import posixpath
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from imgclone.fs.mounttab import unescape
from imgclone.model import parttypes
from imgclone.model.layout import PartFlag

log = logging.getLogger("imgclone")

# XFS superblock feature bits (xfs_format.h), named as mkfs.xfs options
XFS_INCOMPAT = {"ftype": 0x1, "sparse": 0x2, "bigtime": 0x8, "nrext64": 0x20}
XFS_RO_COMPAT = {"finobt": 0x1, "rmapbt": 0x2, "reflink": 0x4, "inobtcount": 0x8}
XFS_V4_FTYPE = 0x200  # sb_features2 on version 4 superblocks


@dataclass(frozen=True)
class FstabEntry:
    spec: str  # UUID=…, LABEL=…, /dev/mapper/vg-lv, …
    file: str  # mount point ("none" or "swap" for swap)
    vfstype: str
    options: str = "defaults"


@dataclass(frozen=True)
class DeviceIndex:
    """What an fstab spec may name, mapped to appliance devices."""

    devices: frozenset[str] = frozenset()
    uuids: Mapping[str, str] = field(default_factory=dict)  # lower-case filesystem UUID → device
    labels: Mapping[str, str] = field(default_factory=dict)
    partuuids: Mapping[str, str] = field(default_factory=dict)  # lower-case PARTUUID → device
    partlabels: Mapping[str, str] = field(default_factory=dict)


def gpt_flags(type_guid: str) -> tuple[PartFlag, ...]:
    """Flags implied by a GPT partition type GUID."""
    flag = parttypes.gpt_flag(type_guid)
    return (flag,) if flag else ()


def mbr_flags(mbr_id: int, bootable: bool) -> tuple[PartFlag, ...]:
    """Flags of an MBR partition from its type byte and active flag."""
    flag = parttypes.mbr_flag(mbr_id)
    return ((PartFlag.BOOT,) if bootable else ()) + ((flag,) if flag else ())


def lvm_uuid(raw: str) -> str:
    """LVM's display form of a UUID (6-4-4-4-4-4-6), from the 32 characters lvm structs return."""
    s = raw.replace("-", "")
    if len(s) != 32:
        return raw
    cuts = (0, 6, 10, 14, 18, 22, 26, 32)
    return "-".join(s[a:b] for a, b in zip(cuts, cuts[1:], strict=False))


def parse_fstab(text: str) -> list[FstabEntry]:
    """Entries of an fstab (comments and short lines skipped, \\040-style escapes decoded)."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0].startswith("#"):
            continue
        spec, file, vfstype = (unescape(f) for f in fields[:3])
        if file.startswith("/"):
            file = posixpath.normpath(file)
            file = "/" + file.lstrip("/")  # normpath keeps a leading "//"
        options = unescape(fields[3]) if len(fields) > 3 else "defaults"
        entries.append(FstabEntry(spec, file, vfstype, options))
    return entries


def split_mapper_name(name: str) -> tuple[str, str] | None:
    """(vg, lv) of a device-mapper name such as "my--vg-root" ("-" doubled inside names), else None."""
    i = 0
    while i < len(name):
        if name[i] == "-":
            if name[i + 1 : i + 2] == "-":
                i += 2
                continue
            vg, lv = name[:i], name[i + 1 :]
            if vg and lv:
                return vg.replace("--", "-"), lv.replace("--", "-")
            return None
        i += 1
    return None


def canonical_device(path: str) -> str:
    """The appliance's name for a guest device path: /dev/vda1 → /dev/sda1, /dev/mapper/vg-lv → /dev/vg/lv."""
    if path.startswith("/dev/mapper/"):
        parts = split_mapper_name(path[len("/dev/mapper/") :])
        return f"/dev/{parts[0]}/{parts[1]}" if parts else path
    m = re.fullmatch(r"/dev/(?:h|s|v|xv)d([a-z]+)(\d*)", path)
    return f"/dev/sd{m.group(1)}{m.group(2)}" if m else path


_BY_PATHS = {
    "/dev/disk/by-uuid/": "UUID",
    "/dev/disk/by-label/": "LABEL",
    "/dev/disk/by-partuuid/": "PARTUUID",
    "/dev/disk/by-partlabel/": "PARTLABEL",
}


def resolve_spec(spec: str, index: DeviceIndex) -> str | None:
    """The appliance device an fstab spec names (UUID=, LABEL=, PARTUUID=, PARTLABEL=, paths), else None."""
    for prefix, kind in _BY_PATHS.items():
        if spec.startswith(prefix):
            value = re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), spec[len(prefix) :])
            spec = f"{kind}={value}"
    kind, sep, value = spec.partition("=")
    tables = {"UUID": index.uuids, "LABEL": index.labels, "PARTUUID": index.partuuids, "PARTLABEL": index.partlabels}
    if sep and kind.upper() in tables:
        value = value.strip().strip("\"'")
        key = value.lower() if kind.upper() in ("UUID", "PARTUUID") else value
        return tables[kind.upper()].get(key)
    dev = canonical_device(spec)
    return dev if dev in index.devices else None


def blkid_value(value: str) -> str:
    """A value of `blkid -o export` with its backslash escapes removed ("my\\ label" → "my label")."""
    return re.sub(r"\\(.)", r"\1", value)


@dataclass(frozen=True)
class PartEntry:
    """A partition table entry as blkid reports it (PART_ENTRY_*)."""

    flags: tuple[PartFlag, ...]
    name: str = ""
    uuid: str = ""
    type_uuid: str = ""
    extended: bool = False  # an MBR extended partition (a container of logical ones)


def part_entry(blkid: Mapping[str, str]) -> PartEntry | None:
    """The partition entry from blkid's PART_ENTRY_* values, None when blkid gave none."""
    scheme = blkid.get("PART_ENTRY_SCHEME")
    if scheme == "gpt":
        type_uuid = blkid.get("PART_ENTRY_TYPE", "").upper()
        name, uuid = blkid_value(blkid.get("PART_ENTRY_NAME", "")), blkid.get("PART_ENTRY_UUID", "").lower()
        return PartEntry(gpt_flags(type_uuid), name, uuid, type_uuid)
    if scheme == "dos":
        try:
            mbr_id = int(blkid.get("PART_ENTRY_TYPE", "0"), 16)
            bootable = bool(int(blkid.get("PART_ENTRY_FLAGS", "0"), 16) & 0x80)
        except ValueError:
            return None
        uuid = blkid.get("PART_ENTRY_UUID", "")
        return PartEntry(mbr_flags(mbr_id, bootable), uuid=uuid, extended=mbr_id in parttypes.MBR_EXTENDED)
    return None


def xfs_features(info: Mapping[str, Any], superblock: bytes) -> dict[str, Any]:
    """Parameters of an XFS filesystem: xfs_info's geometry plus the superblock's feature bits."""
    params: dict[str, Any] = {k.removeprefix("xfs_"): v for k, v in info.items() if k != "xfs_mntpoint"}
    if len(superblock) >= 224 and superblock[:4] == b"XFSB":
        (version,) = struct.unpack_from(">H", superblock, 100)
        (features2,) = struct.unpack_from(">I", superblock, 200)
        ro_compat, incompat = struct.unpack_from(">II", superblock, 212)
        v5 = (version & 0xF) == 5
        params["crc"] = int(v5)
        for name, bit in XFS_INCOMPAT.items():
            params[name] = int(v5 and bool(incompat & bit))
        for name, bit in XFS_RO_COMPAT.items():
            params[name] = int(v5 and bool(ro_compat & bit))
        if not v5:
            params["ftype"] = int(bool(features2 & XFS_V4_FTYPE))
    return {"xfs": params}


def mountpoints(root: str, fstab: Sequence[FstabEntry], index: DeviceIndex) -> dict[str, str]:
    """Mount point → device: the root at /, and each fstab filesystem that names a device of the drives (swap,
    tmpfs, network and bind mounts name none)."""
    found = {"/": root}
    for e in fstab:
        if not e.file.startswith("/") or e.file == "/" or e.vfstype in ("swap", "none"):
            continue
        dev = resolve_spec(e.spec, index)
        if dev is None:
            log.debug("fstab %s on %s: not a device of the drives; not captured", e.spec, e.file)
            continue
        found.setdefault(posixpath.normpath(e.file), dev)
    return found
