"""The layout model: JSON round trip, mount order and validation messages."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from imgclone.errors import LayoutError
from imgclone.model.layout import FsType, Layout, PartFlag, TableType, fs_id

DATA = Path(__file__).parent / "data" / "layout-bios-lvm.json"


def load() -> Layout:
    return Layout.from_json(DATA.read_text())


def test_round_trip_is_identity() -> None:
    layout = load()
    again = Layout.from_json(layout.to_json())
    assert again == layout
    assert json.loads(layout.to_json()) == json.loads(DATA.read_text())


def test_types_are_parsed() -> None:
    layout = load()
    assert layout.disks[0].table is TableType.MSDOS
    assert layout.partitions[1].flags == (PartFlag.LVM,)
    assert layout.filesystems[2].type is FsType.XFS
    layout.validate()


def test_mount_order_parents_first() -> None:
    assert [f.mountpoint for f in load().mount_order()] == ["/", "/boot", "/var"]


def test_fs_id() -> None:
    assert [fs_id(m) for m in ("/", "/boot/efi", "/srv/my data")] == [
        "fs-root",
        "fs-boot-efi",
        "fs-srv-my_data",
    ]


def _with(layout: Layout, **changes: object) -> Layout:
    return dataclasses.replace(layout, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda lo: _with(lo, lvs=(dataclasses.replace(lo.lvs[1], vg="vg-data"), *lo.lvs[::2])),
         "LogicalVolume lv-rootvg-var: volume group vg-data does not exist"),
        (lambda lo: _with(lo, lvs=(dataclasses.replace(lo.lvs[0], vg="part-sda1"),)),
         "LogicalVolume lv-rootvg-root: volume group part-sda1 is a Partition, expected VolumeGroup"),
        (lambda lo: _with(lo, partitions=(lo.partitions[0], dataclasses.replace(lo.partitions[1], start=1048576))),
         "Partition part-sda2: overlaps partition part-sda1"),
        (lambda lo: _with(lo, filesystems=(*lo.filesystems, dataclasses.replace(lo.filesystems[0], id="fs-x"))),
         "Filesystem fs-x: device lv-rootvg-root is already used by Filesystem fs-root"),
        (lambda lo: _with(lo, vgs=(dataclasses.replace(lo.vgs[0], pvs=("part-sdz9",)),)),
         "VolumeGroup vg-rootvg: physical volume part-sdz9 does not exist"),
        (lambda lo: _with(lo, partitions=(lo.partitions[0], dataclasses.replace(lo.partitions[1], size=10**12))),
         "Partition part-sda2: ends beyond the end of disk disk-sda"),
        (lambda lo: _with(lo, disks=(*lo.disks, dataclasses.replace(lo.disks[0], path="/dev/sdb"))),
         "Disk disk-sda: duplicate id"),
        (lambda lo: _with(lo, filesystems=(dataclasses.replace(lo.filesystems[0], mountpoint="boot"),)),
         "Filesystem fs-root: mount point 'boot' is not absolute"),
    ],
)  # fmt: skip
def test_validation_names_the_object(change: object, message: str) -> None:
    broken = change(load())  # type: ignore[operator]
    with pytest.raises(LayoutError) as e:
        broken.validate()
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"version": 7}', "unsupported version 7"),
        ('{"version": 1, "disks": [{"id": "d", "path": "/dev/x", "size": 1, "colour": "red"}]}', "unknown field"),
        ('{"version": 1, "disks": [{"id": "d"}]}', "Disk d:"),
        ('{"version": 1, "filesystems": [{"id": "f", "device": "d", "type": "zfs", "mountpoint": "/", "size": 1}]}',
         "'zfs' is not a valid FsType"),
    ],
)  # fmt: skip
def test_bad_json_gives_readable_errors(text: str, message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        Layout.from_json(text)
