"""The host tools `imgclone capture` asks about the storage, and their output parsed (pure): findmnt, lsblk,
`blkid -p`, LVM's JSON reports (pvs, lvs), dumpe2fs, xfs_info, and the partition flags lsblk's types imply."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from imgclone.errors import ImgcloneError
from imgclone.host.reports import xfs_info_sections
from imgclone.model import parttypes
from imgclone.model.layout import LvKind, PartFlag, TableType

FINDMNT = ["findmnt", "--json", "--bytes", "--list", "--nofsroot"]
FINDMNT += ["--output", "TARGET,SOURCE,FSTYPE,OPTIONS,SIZE,USED,MAJ:MIN,FSROOT"]
LSBLK_COLUMNS = (
    "NAME,KNAME,TYPE,SIZE,PKNAME,FSTYPE,UUID,LABEL,PARTUUID,PARTLABEL,PARTTYPE,PARTFLAGS,"
    "PTTYPE,PTUUID,LOG-SEC,START,MAJ:MIN,MOUNTPOINTS"
)
LSBLK = ["lsblk", "--json", "--bytes", "--paths", "--output", LSBLK_COLUMNS]
_LVM_REPORT = ["--reportformat", "json", "--units", "b", "--nosuffix", "-o"]
PVS = ["pvs", *_LVM_REPORT, "pv_name,vg_name,vg_uuid,vg_extent_size"]
_LV_KIND = "segtype,pool_lv,chunk_size,lv_metadata_size"
LVS = ["lvs", *_LVM_REPORT, "vg_name,lv_name,lv_uuid,lv_size,lv_dm_path,lv_kernel_major,lv_kernel_minor," + _LV_KIND]
LVS_KINDS = ["lvs", *_LVM_REPORT, "vg_name,lv_name," + _LV_KIND]  # the appliance: what libguestfs's lvs_full lacks
_SEGTYPES = {"linear": LvKind.LINEAR, "striped": LvKind.LINEAR, "thin-pool": LvKind.THIN_POOL, "thin": LvKind.THIN}

# blkid -p keys → lsblk column names, so both fill one dict
_BLKID_KEYS = {"TYPE": "fstype", "UUID": "uuid", "LABEL": "label", "PTTYPE": "pttype", "PTUUID": "ptuuid"}
_PART_KEYS = {
    "UUID": "partuuid",
    "NAME": "partlabel",
    "TYPE": "parttype",
    "FLAGS": "partflags",
    "NUMBER": "partn",
}
_BLKID_KEYS |= {f"PART_ENTRY_{k}": v for k, v in _PART_KEYS.items()} | {"PART_ENTRY_OFFSET": "offset"}
# partition table types as lsblk, blkid (PTTYPE) and parted name them
TABLE_TYPES = {"dos": TableType.MSDOS, "msdos": TableType.MSDOS, "gpt": TableType.GPT}


def flags_from_type(table: TableType, parttype: str, partflags: str) -> tuple[PartFlag, ...]:
    """Partition flags implied by lsblk/blkid's PARTTYPE and PARTFLAGS, as parted would show them."""
    if table == TableType.GPT:
        flag = parttypes.gpt_flag(parttype)
        return (PartFlag.BOOT, flag) if flag is PartFlag.ESP else (flag,) if flag else ()  # parted: "boot, esp"
    flag = parttypes.mbr_flag(as_int(parttype))
    return ((PartFlag.BOOT,) if as_int(partflags) & 0x80 else ()) + ((flag,) if flag else ())


def lv_kind(vg: str, row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The LogicalVolume fields an `lvs` row with _LV_KIND gives (kind, pool id, a pool's chunk and metadata
    sizes); None for a kind imgclone does not recreate (snapshot, cache, raid, vdo...): it is left out, with a
    warning. A row without segtype (older callers) is a plain LV."""
    kind = _SEGTYPES.get(str(row.get("segtype") or "linear"))
    if kind is None:
        return None
    pool = str(row.get("pool_lv") or "")
    fields: dict[str, Any] = {"kind": kind, "pool": f"lv-{vg}-{pool}" if pool and kind == LvKind.THIN else ""}
    if kind == LvKind.THIN_POOL:
        fields |= {"chunk_size": as_int(row.get("chunk_size")), "metadata_size": as_int(row.get("lv_metadata_size"))}
    return fields


def as_int(value: Any) -> int:
    """lsblk prints numbers as numbers (2.38) or strings (older); blkid and LVM as strings; 0x80 too."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value or "").strip().lower()
    try:
        return int(text, 16) if text.startswith("0x") else int(text)
    except ValueError:
        return 0


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ImgcloneError(f"{what}: unexpected output, not JSON: {e}") from e


@dataclass(frozen=True)
class Mount:
    target: str
    source: str
    fstype: str
    options: str = ""
    size: int = 0
    used: int = 0
    majmin: str = ""
    fsroot: str = "/"


def parse_findmnt(text: str) -> list[Mount]:
    """Mounts from `findmnt --json`, in mount order (flattens the tree form too)."""

    def walk(nodes: Iterable[Any]) -> Iterable[Mount]:
        for n in nodes:
            target, source, fstype, options, majmin = (
                n.get(k) or "" for k in ("target", "source", "fstype", "options", "maj:min")
            )
            size, used = as_int(n.get("size")), as_int(n.get("used"))
            yield Mount(target, source, fstype, options, size, used, majmin, n.get("fsroot") or "/")
            yield from walk(n.get("children", []))

    return list(walk(_json(text, "findmnt").get("filesystems", [])))


@dataclass
class BlockDev:
    name: str
    type: str
    size: int = 0
    kname: str = ""
    majmin: str = ""
    log_sec: int = 512
    start: int = 0  # 512-byte sectors, as sysfs counts them
    mountpoints: tuple[str, ...] = ()
    props: dict[str, str] = field(default_factory=dict)  # fstype, uuid, label, part*, pt*
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)


def parse_lsblk(text: str) -> dict[str, BlockDev]:
    """Block devices from `lsblk --json --paths` by name, with every parent (an LV has one per PV)."""
    devs: dict[str, BlockDev] = {}
    props = ("fstype", "uuid", "label", "partuuid", "partlabel", "parttype", "partflags", "pttype", "ptuuid")

    def walk(nodes: Iterable[Any], parent: str | None) -> None:
        for n in nodes:
            name = n["name"]
            dev = devs.get(name)
            if dev is None:
                points = n.get("mountpoints", [n.get("mountpoint")])
                dev = devs[name] = BlockDev(
                    name=name,
                    type=n.get("type") or "",
                    size=as_int(n.get("size")),
                    kname=n.get("kname") or "",
                    majmin=n.get("maj:min") or "",
                    log_sec=as_int(n.get("log-sec")) or 512,
                    start=as_int(n.get("start")),
                    mountpoints=tuple(p for p in points or [] if p),
                    props={k: str(n[k]) for k in props if n.get(k)},
                )
            if parent is not None and parent not in dev.parents:
                dev.parents.append(parent)
                devs[parent].children.append(name)
            walk(n.get("children", []), name)

    walk(_json(text, "lsblk").get("blockdevices", []), None)
    return devs


def parse_blkid(text: str) -> dict[str, str]:
    """`blkid -p -o export` output as lsblk column names (TYPE → fstype, PART_ENTRY_UUID → partuuid …)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in _BLKID_KEYS and value:
            out[_BLKID_KEYS[key]] = value
    return out


def parse_xfs_info(text: str) -> dict[str, Any]:
    """The layout's features of an xfs filesystem from `xfs_info` output."""
    sections = xfs_info_sections(text)
    meta, data = sections.get("meta-data", {}), sections.get("data", {})
    xfs: dict[str, Any] = {k: as_int(v) for k, v in meta.items() if k and re.fullmatch(r"\d+", v)}
    xfs["blocksize"] = as_int(data.get("bsize"))
    xfs["inode_size"] = as_int(meta.get("isize"))
    for section, key, name in (("naming", "ftype", "ftype"), ("log", "blocks", "log_blocks")):
        if key in sections.get(section, {}):
            xfs[name] = as_int(sections[section][key])
    return {"xfs": xfs}
