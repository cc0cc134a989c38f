"""Partition types: the GPT type GUID and the MBR type id of each partition flag, in one table.

The probes read flags from the types they find (pyparted, blkid, libguestfs), the planner gives a GPT partition
the type of its flags, the builder writes them, boot-test looks for the ESP; all of them look the types up here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from imgclone.model.layout import PartFlag

# as sfdisk --label gpt -T names them; upper case, as libguestfs returns them
GPT_TYPES: Mapping[PartFlag, str] = {
    PartFlag.ESP: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",  # EFI System
    PartFlag.BIOS_GRUB: "21686148-6449-6E6F-744E-656564454649",  # BIOS boot
    PartFlag.LVM: "E6D6D379-F507-44C2-A23C-238F2A3DF928",  # Linux LVM
    PartFlag.SWAP: "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",  # Linux swap
}
GPT_TYPE_FLAGS: Mapping[str, PartFlag] = {guid: flag for flag, guid in GPT_TYPES.items()}
GPT_LINUX_DATA = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"  # Linux filesystem: a partition with none of the flags
MBR_IDS: Mapping[PartFlag, int] = {PartFlag.LVM: 0x8E, PartFlag.SWAP: 0x82, PartFlag.ESP: 0xEF}
MBR_ID_FLAGS: Mapping[int, PartFlag] = {mbr_id: flag for flag, mbr_id in MBR_IDS.items()}
MBR_EXTENDED = frozenset({0x05, 0x0F, 0x85})  # extended partitions: containers of the logical ones


def gpt_type(flags: Iterable[PartFlag]) -> str | None:
    """The GPT type GUID of the first of flags that has one; None when none has."""
    return next((GPT_TYPES[f] for f in flags if f in GPT_TYPES), None)


def gpt_flag(type_guid: str) -> PartFlag | None:
    """The flag a GPT partition type GUID stands for (in any case); None for every other type."""
    return GPT_TYPE_FLAGS.get(type_guid.strip().upper())


def mbr_id(flags: Iterable[PartFlag]) -> int | None:
    """The MBR type id of the first of flags that has one; None when none has."""
    return next((MBR_IDS[f] for f in flags if f in MBR_IDS), None)


def mbr_flag(type_id: int) -> PartFlag | None:
    """The flag an MBR partition type id stands for; None for every other id."""
    return MBR_ID_FLAGS.get(type_id)
