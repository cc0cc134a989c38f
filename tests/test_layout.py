"""The layout model: JSON round trip, mount order and validation messages."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from imgclone.errors import LayoutError
from imgclone.model.layout import (
    Filesystem,
    FsType,
    Layout,
    LvKind,
    PartFlag,
    TableType,
    fs_id,
)
from tests.layouts import stacks

DATA = Path(__file__).parent / "data" / "layout-bios-lvm.json"


def load() -> Layout:
    return Layout.from_json(DATA.read_text())


def test_round_trip_is_identity() -> None:
    layout = load()
    again = Layout.from_json(layout.to_json())
    assert again == layout


def test_a_version_1_layout_reads_as_version_2_with_the_new_fields_at_their_defaults() -> None:
    """DATA is a version 1 layout (before subvolumes and thin LVs): read, it writes as version 2, each object
    the same plus the new fields (LVs linear, no pool) and no subvolumes."""
    old, new = json.loads(DATA.read_text()), json.loads(load().to_json())
    assert (old["version"], new["version"], new["subvolumes"]) == (1, 2, [])
    for kind, objects in old.items():
        if kind != "version":
            assert [{k: o[k] for k in old_o} for o, old_o in zip(new[kind], objects, strict=True)] == objects
    new_fields = {(lv["kind"], lv["pool"], lv["chunk_size"], lv["metadata_size"]) for lv in new["lvs"]}
    assert new_fields == {("linear", "", 0, 0)}


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


# -- version 2: btrfs subvolumes, thin pools and thin LVs --------------------------------------------------
def test_subvolumes_and_thin_lvs_round_trip_and_validate() -> None:
    layout = stacks()
    layout.validate()
    assert Layout.from_json(layout.to_json()) == layout
    doc = json.loads(layout.to_json())
    assert doc["version"] == 2 and doc["lvs"][1]["kind"] == "thin" and doc["subvolumes"][2]["readonly"] is True
    assert [s.path for s in layout.subvolumes_of("fs-root")] == ["@", "@home", "@/.snapshots/1/snapshot"]


def _sv(lo: Layout, i: int, **kw: object) -> Layout:
    subs = list(lo.subvolumes)
    subs[i] = dataclasses.replace(subs[i], **kw)  # type: ignore[arg-type]
    return _with(lo, subvolumes=tuple(subs))


def _on(fs: Filesystem, device: str) -> Filesystem:
    return dataclasses.replace(fs, device=device)


def _lv(lo: Layout, i: int, **kw: object) -> Layout:
    lvs = list(lo.lvs)
    lvs[i] = dataclasses.replace(lvs[i], **kw)  # type: ignore[arg-type]
    return _with(lo, lvs=tuple(lvs))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda lo: _lv(lo, 1, pool="lv-vg0-nope"),
         "LogicalVolume lv-vg0-data: a thin LV needs a thin pool, and lv-vg0-nope is not one"),
        (lambda lo: _lv(lo, 1, kind=LvKind.LINEAR), "LogicalVolume lv-vg0-data: only a thin LV has a pool"),
        (lambda lo: _lv(lo, 0, chunk_size=100 * 1024),
         "LogicalVolume lv-vg0-pool: chunk size 102400 is not one LVM takes"),
        (lambda lo: _lv(lo, 1, chunk_size=64 * 1024),
         "LogicalVolume lv-vg0-data: chunk and metadata sizes belong to thin pools"),
        (lambda lo: _with(lo, filesystems=(*lo.filesystems[:2], _on(lo.filesystems[2], "lv-vg0-pool"))),
         "LogicalVolume lv-vg0-pool: a thin pool cannot hold a filesystem or swap (Filesystem fs-data)"),
        (lambda lo: _sv(lo, 0, filesystem="fs-boot"), "Subvolume sv-root-home: filesystem fs-boot is ext4, not btrfs"),
        (lambda lo: _sv(lo, 0, filesystem="fs-x"), "Subvolume sv-root-home: filesystem fs-x does not exist"),
        (lambda lo: _sv(lo, 0, path="/@home"), "Subvolume sv-root-home: path '/@home' must be relative"),
        (lambda lo: _sv(lo, 0, path="@"), "Subvolume sv-root-at: path @ is also another subvolume's"),
        (lambda lo: _sv(_sv(lo, 0, default=True), 1, default=True),
         "Subvolume sv-root-at: sv-root-home is the default subvolume already"),
        (lambda lo: _sv(lo, 0, mountpoint="/boot"),
         "Subvolume sv-root-home: mount point /boot is also used by fs-boot"),
        (lambda lo: _sv(lo, 2, mountpoint="/home"),
         "Subvolume sv-root-snap: mount point /home is also used by sv-root-home"),
        (lambda lo: _sv(lo, 0, mountpoint="home"), "Subvolume sv-root-home: mount point 'home' is not absolute"),
    ],
)  # fmt: skip
def test_validation_of_subvolumes_and_thin_lvs(change: object, message: str) -> None:
    broken = change(stacks())  # type: ignore[operator]
    with pytest.raises(LayoutError) as e:
        broken.validate()
    assert message in str(e.value)


def test_a_newer_layout_version_is_refused_with_what_this_imgclone_reads() -> None:
    with pytest.raises(LayoutError, match="unsupported version 3") as e:
        Layout.from_json('{"version": 3}')
    assert "reads versions 1, 2" in (e.value.hint or "")
