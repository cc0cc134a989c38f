"""A disk's partition table as pyparted reads it on this host (probe/host.py fills the layout's disks with it)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imgclone.errors import ImgcloneError
from imgclone.model.layout import PartFlag, TableType
from imgclone.probe.host_parsers import TABLE_TYPES

log = logging.getLogger("imgclone")

__all__ = ["PartitionTable", "ReadTable", "TableEntry", "read_partition_table"]


@dataclass(frozen=True)
class TableEntry:
    number: int
    start: int  # bytes
    size: int  # bytes
    flags: tuple[PartFlag, ...] = ()
    name: str = ""
    extended: bool = False  # an msdos extended partition: a container, not in the layout


@dataclass(frozen=True)
class PartitionTable:
    type: TableType
    sector_size: int
    entries: tuple[TableEntry, ...] = ()


ReadTable = Callable[[str], PartitionTable | None]


def read_partition_table(path: str) -> PartitionTable | None:
    """The partition table of the disk at path as pyparted reads it; None when it cannot be read."""
    try:
        import parted

        disk = parted.newDisk(parted.getDevice(path))
    except Exception as e:  # ImportError or libparted's errors: lsblk and blkid answer instead
        log.debug("pyparted cannot read %s: %s", path, e)
        return None
    sector = int(disk.device.sectorSize)
    if disk.type == "loop":  # parted's name for "no table, a filesystem on the whole disk"
        return PartitionTable(TableType.NONE, sector)
    if disk.type not in TABLE_TYPES:
        raise ImgcloneError(f"{path}: {disk.type} partition tables are not supported", "use msdos or gpt")
    known = {str(f) for f in PartFlag}
    entries = []
    for p in disk.partitions:
        flags = [n for k, n in sorted(parted.partitionFlag.items()) if n in known and _has_flag(p, k)]
        start, size = int(p.geometry.start) * sector, int(p.geometry.length) * sector
        extended = bool(p.type & parted.PARTITION_EXTENDED)
        entries.append(TableEntry(int(p.number), start, size, tuple(map(PartFlag, flags)), p.name or "", extended))
    return PartitionTable(TABLE_TYPES[disk.type], sector, tuple(entries))


def _has_flag(part: Any, flag: int) -> bool:
    return bool(part.isFlagAvailable(flag) and part.getFlag(flag))
