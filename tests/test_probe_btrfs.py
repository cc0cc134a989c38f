"""probe/btrfs: btrfs-progs' subvolume listings (real outputs of this host's btrfs-progs, tests/data/probe/btrfs_*)
into the layout's Subvolumes."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgclone.model.layout import Disk, Filesystem, FsType, Layout, Partition
from imgclone.probe import btrfs
from imgclone.probe.btrfs import SubvolMount, SubvolRow

DATA = Path(__file__).parent / "data" / "probe"


def rows() -> list[SubvolRow]:
    return btrfs.parse_list((DATA / "btrfs_subvolume_list.txt").read_bytes())


def test_parse_list_reads_ids_parents_uuids_and_paths_with_spaces() -> None:
    got = rows()
    assert [(r.id, r.parent, r.path) for r in got] == [
        (256, 5, "@"),
        (257, 5, "@home"),
        (258, 256, "@/.snapshots"),
        (259, 258, "@/.snapshots/1/snapshot"),
        (260, 257, "@home/we ird"),
    ]
    assert got[3].parent_uuid == got[0].uuid == "10378d40-199f-2d43-be80-72e1ae9a20f5"
    assert [r.parent_uuid for r in got if r.id != 259] == ["", "", "", ""]
    ro = btrfs.parse_list((DATA / "btrfs_subvolume_list_ro.txt").read_bytes())  # -r: no -p -u -q columns
    assert [(r.id, r.parent, r.path) for r in ro] == [(259, 258, "@/.snapshots/1/snapshot")]


def test_parse_list_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="cannot read"):
        btrfs.parse_list(b"ERROR: not a btrfs filesystem: /mnt\n")
    assert btrfs.parse_list(b"") == []


def test_parse_default() -> None:
    assert btrfs.parse_default((DATA / "btrfs_get_default.txt").read_text()) == 256
    assert btrfs.parse_default((DATA / "btrfs_get_default_top.txt").read_text()) == btrfs.TOP_LEVEL
    with pytest.raises(ValueError, match="get-default"):
        btrfs.parse_default("ERROR: can't perform the search")


def test_subvolumes_as_the_layout_records_them() -> None:
    mounts = [SubvolMount("/@", "/", "subvol=/@,compress=zstd:3"), SubvolMount("@home", "/home", "subvol=@home"),
              SubvolMount("@home", "/srv/home-again", "subvol=@home")]  # fmt: skip
    svs = btrfs.subvolumes("fs-root", rows(), default=256, readonly=[259], mounts=mounts)
    assert [(s.id, s.path, s.mountpoint, s.default, s.readonly, s.snapshot, s.source_id) for s in svs] == [
        ("sv-root-@", "@", "/", True, False, False, 256),
        ("sv-root-@home", "@home", "/home", False, False, False, 257),
        ("sv-root-@-.snapshots", "@/.snapshots", "", False, False, False, 258),
        ("sv-root-@home-we_ird", "@home/we ird", "", False, False, False, 260),
        ("sv-root-@-.snapshots-1-snapshot", "@/.snapshots/1/snapshot", "", False, True, True, 259),
    ]
    assert svs[0].options == "subvol=/@,compress=zstd:3"
    layout = Layout(disks=(Disk("disk-sda", "/dev/sda", 1 << 30),),
                    partitions=(Partition("part-sda2", "disk-sda", 2, 1 << 20, 512 << 20),),
                    filesystems=(Filesystem("fs-root", "part-sda2", FsType.BTRFS, "/", 512 << 20),),
                    subvolumes=svs)  # fmt: skip
    layout.validate()  # the ids are unique, the paths too, one default, mount points free


@pytest.mark.parametrize(
    ("options", "fsroot", "path"),
    [("rw,relatime,subvolid=257,subvol=/@home", "", "@home"), ("rw,relatime", "/@", "@"), ("rw", "", "")],
)
def test_mounted_path(options: str, fsroot: str, path: str) -> None:
    assert btrfs.mounted_path(options, fsroot) == path
