"""What the host's storage tools print, parsed: LVM's JSON reports, `tune2fs -l`, `parted -m`, `xfs_info`.

Pure functions of the text. The running system's probe (probe/host.py) and the host's Guest (guest/onhost.py)
read the same tools' output through them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

LVM_ENV = {"LVM_SUPPRESS_FD_WARNINGS": "1"}  # lvm's warnings of the file descriptors it inherits: noise


def parse_lvm_report(text: str, kind: str) -> list[dict[str, str]]:
    """Rows of an LVM JSON report (kind "pv", "vg" or "lv"); [] when the text is not one."""
    try:
        return [row for rep in json.loads(text).get("report", []) for row in rep.get(kind, [])]
    except (json.JSONDecodeError, AttributeError):
        return []


def parse_dumpe2fs(text: str) -> dict[str, str]:
    """The `Name: value` lines of `dumpe2fs -h` (or `tune2fs -l`)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and key[:1] != " ":
            out.setdefault(key.strip(), value.strip())
    return out


@dataclass(frozen=True)
class PartedPartition:
    number: int
    start: int  # bytes
    end: int  # its last byte
    size: int
    name: str
    flags: tuple[str, ...]


@dataclass(frozen=True)
class PartedDisk:
    table: str  # msdos, gpt, loop, unknown
    sector_size: int
    partitions: tuple[PartedPartition, ...]


def _bytes(field: str) -> int:
    return int(field.removesuffix("B"))


def parse_parted(text: str) -> PartedDisk:
    """`parted -m -s -- DEV unit b print`: the disk's line, then one line per partition (fields split by ":", each
    line ended by ";")."""
    lines = [line.rstrip().removesuffix(";") for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or lines[0] != "BYT":
        raise ValueError(f"not parted's machine output: {text[:80]!r}")
    disk = lines[1].split(":")
    parts = []
    for line in lines[2:]:
        f = line.split(":")
        flags = tuple(x.strip() for x in f[6].split(",") if x.strip()) if len(f) > 6 else ()
        parts.append(PartedPartition(int(f[0]), _bytes(f[1]), _bytes(f[2]), _bytes(f[3]), f[5] if len(f) > 5 else "",
                                     flags))  # fmt: skip
    return PartedDisk(disk[5], int(disk[3]), tuple(parts))


XFS_FIELDS = {  # libguestfs's xfs_info names → (xfs_info's section, its key); the section's own value: key ""
    "xfs_mntpoint": ("meta-data", ""), "xfs_inodesize": ("meta-data", "isize"), "xfs_agcount": ("meta-data", "agcount"),
    "xfs_agsize": ("meta-data", "agsize"), "xfs_sectsize": ("meta-data", "sectsz"), "xfs_attr": ("meta-data", "attr"),
    "xfs_blocksize": ("data", "bsize"), "xfs_datablocks": ("data", "blocks"), "xfs_imaxpct": ("data", "imaxpct"),
    "xfs_sunit": ("data", "sunit"), "xfs_swidth": ("data", "swidth"), "xfs_dirversion": ("naming", ""),
    "xfs_dirblocksize": ("naming", "bsize"), "xfs_cimode": ("naming", "ascii-ci"), "xfs_logname": ("log", ""),
    "xfs_logblocksize": ("log", "bsize"), "xfs_logblocks": ("log", "blocks"), "xfs_logversion": ("log", "version"),
    "xfs_logsectsize": ("log", "sectsz"), "xfs_logsunit": ("log", "sunit"), "xfs_lazycount": ("log", "lazy-count"),
    "xfs_rtname": ("realtime", ""), "xfs_rtextsize": ("realtime", "extsz"), "xfs_rtblocks": ("realtime", "blocks"),
    "xfs_rtextents": ("realtime", "rtextents"),
}  # fmt: skip


def xfs_info_sections(text: str) -> dict[str, dict[str, str]]:
    """`xfs_info`'s sections (meta-data, data, naming, log, realtime), each its `key=value`s as text, the value
    after the section's "=" under the key "" ("/dev/sda1", "version 2", "internal log")."""
    sections: dict[str, dict[str, str]] = {}
    current = ""
    for line in text.splitlines():
        m = re.match(r"^([a-z-]*)\s*=(.*)$", line)
        if not m:
            continue
        if m.group(1):
            current = m.group(1)
            head = re.split(r"\s+[A-Za-z0-9_-]+=", " " + m.group(2).strip(), maxsplit=1)[0].strip()
            sections.setdefault(current, {})[""] = head
        for key, value in re.findall(r"([A-Za-z0-9_-]+)=([^\s,]+)", m.group(2)):
            sections.setdefault(current, {}).setdefault(key, value)
    return sections


def parse_xfs_info(text: str) -> dict[str, int | str]:
    """`xfs_info` as libguestfs's xfs_info returns it (XFS_FIELDS): numbers as ints, the names as text."""
    sections = xfs_info_sections(text)
    out: dict[str, int | str] = {}
    for name, (section, key) in XFS_FIELDS.items():
        value = sections.get(section, {}).get(key, "")
        if name in ("xfs_mntpoint", "xfs_logname", "xfs_rtname"):
            out[name] = value
        else:
            number = re.search(r"\d+", value)  # "version 2" → 2
            out[name] = int(number.group()) if number else -1
    return out
