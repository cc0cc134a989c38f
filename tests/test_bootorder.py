"""The boot order after Phase 3 (AIX's bootlist): images nothing, UEFI hosts BootNext, BIOS hosts a hint."""

from __future__ import annotations

import pytest

from imgclone.errors import ImgcloneError
from imgclone.model.journal import Journal
from imgclone.model.layout import Disk, Layout, PartFlag, Partition, TableType
from imgclone.phases.bootorder import entries, parse_entry, set_boot_order
from tests.fakes import FakeRunner

EFI_OUT = """\
BootCurrent: 0001
Timeout: 1 seconds
BootOrder: 0004,0001,0000
Boot0000* UiApp
Boot0001* debian	HD(1,GPT,...)/File(\\EFI\\debian\\shimx64.efi)
Boot0004* imgclone clone on sdb	HD(1,GPT,...)/File(\\EFI\\BOOT\\BOOTX64.EFI)
"""


def _doc(kind: str, firmware: str = "uefi") -> Journal:
    layout = Layout(
        disks=(Disk(id="disk-0", path="/dev/sdb", size=10 << 30, table=TableType.GPT),),
        partitions=(Partition(id="p1", disk="disk-0", number=1, start=1 << 20, size=512 << 20,
                              flags=(PartFlag.ESP,)),),
    )  # fmt: skip
    return Journal.from_dict({"targets": [{"path": "/dev/sdb" if kind == "device" else "/v/c.qcow2", "kind": kind}],
                              "layout": layout.to_dict(), "boot": {"firmware": firmware}})  # fmt: skip


def test_images_get_no_boot_order() -> None:
    run = FakeRunner()
    assert "images, nothing to set" in set_boot_order(_doc("image"), runner=run, firmware="uefi")[0]
    assert run.calls == []


BEFORE = """\
BootCurrent: 0001
BootOrder: 0001,0000
Boot0000* UiApp
Boot0001* debian
"""


def test_uefi_host_gets_an_entry_and_bootnext() -> None:
    run = FakeRunner({("efibootmgr",): BEFORE, ("efibootmgr", "--create-only"): EFI_OUT,
                      ("efibootmgr", "--bootnext"): ""})  # fmt: skip
    lines = set_boot_order(_doc("device"), runner=run, firmware="uefi")
    # --create-only: BootOrder stays as it was, so a clone that fails to boot is tried once, not every time
    assert run.calls[1] == ["efibootmgr", "--create-only", "--disk", "/dev/sdb", "--part", "1", "--label",
                            "imgclone clone on sdb", "--loader", "\\EFI\\BOOT\\BOOTX64.EFI"]  # fmt: skip
    assert run.calls[2] == ["efibootmgr", "--bootnext", "0004"]
    assert len(run.calls) == 3 and "Boot0004" in lines[0]


def test_entry_of_an_earlier_run_is_replaced() -> None:
    run = FakeRunner({("efibootmgr",): EFI_OUT, ("efibootmgr", "--create-only"): EFI_OUT.replace("0004", "0005"),
                      ("efibootmgr", "--quiet"): "", ("efibootmgr", "--bootnext"): ""})  # fmt: skip
    lines = set_boot_order(_doc("device"), runner=run, firmware="uefi")
    assert run.calls[1] == ["efibootmgr", "--quiet", "--bootnum", "0004", "--delete-bootnum"]
    assert run.calls[-1] == ["efibootmgr", "--bootnext", "0005"] and "Boot0005" in lines[0]


def test_entries_match_the_whole_label() -> None:
    listing = (
        "Boot0002* imgclone clone on sdb1\nBoot0003* imgclone clone on sdb\nBoot0004 imgclone clone on sdb\tHD()\n"
    )
    assert entries(listing, "imgclone clone on sdb") == ["0003", "0004"]


def test_bios_host_says_what_to_choose() -> None:
    run = FakeRunner()
    lines = set_boot_order(_doc("device"), runner=run, firmware="bios")
    assert "choose /dev/sdb in its boot menu" in lines[0] and run.calls == []


def test_bios_clone_on_uefi_host_is_a_hint() -> None:
    lines = set_boot_order(_doc("device", firmware="bios"), runner=FakeRunner(), firmware="uefi")
    assert "legacy (CSM)" in lines[0]


def test_entry_not_listed_is_an_error() -> None:
    with pytest.raises(ImgcloneError, match="did not list the new entry"):
        parse_entry("BootOrder: 0001\n", "imgclone clone on sdb")
