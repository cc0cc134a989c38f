"""probe/btrfs: btrfs-progs' subvolume listings (real outputs of this host's btrfs-progs, tests/data/probe/btrfs_*)
into the layout's Subvolumes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from imgclone.errors import LayoutError
from imgclone.guest.appliance import Appliance
from imgclone.model.layout import Disk, Filesystem, FsType, Layout, Partition
from imgclone.probe import btrfs
from imgclone.probe.btrfs import SubvolMount, SubvolRow
from imgclone.probe.guest import probe_image
from imgclone.probe.host import probe_running
from imgclone.probe.host_parsers import LSBLK
from tests.fakes import FakeGuest, FakeRunner, fail

DATA = Path(__file__).parent / "data" / "probe"
Run = Callable[..., subprocess.CompletedProcess[bytes]]


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


# -- probe_image on a fake handle: /boot ext4, a btrfs with subvolumes (the real listing above), swap ---------------
BTRFS_BLKID = {
    "/dev/sda": {"PTTYPE": "dos", "PTUUID": "0b0b0b0b"},
    "/dev/sda1": {"TYPE": "ext4", "UUID": "1111", "PART_ENTRY_SCHEME": "dos", "PART_ENTRY_TYPE": "0x83",
                  "PART_ENTRY_FLAGS": "0x80", "PART_ENTRY_UUID": "0b0b0b0b-01"},
    "/dev/sda2": {"TYPE": "btrfs", "UUID": "2222", "LABEL": "root", "PART_ENTRY_SCHEME": "dos",
                  "PART_ENTRY_TYPE": "0x83", "PART_ENTRY_UUID": "0b0b0b0b-02"},
    "/dev/sda3": {"TYPE": "swap", "UUID": "3333", "PART_ENTRY_SCHEME": "dos", "PART_ENTRY_TYPE": "0x82",
                  "PART_ENTRY_UUID": "0b0b0b0b-03"},
}  # fmt: skip
PARTS = {1: (1 << 20, 256 << 20), 2: (257 << 20, 2048 << 20), 3: (2305 << 20, 128 << 20)}


def btrfs_guest(default: str, root_option: str) -> FakeGuest:
    """The btrfs fixtures' shape: the root is subvolume @ (reached by its name, or as the default subvolume)."""
    fstab = (f"UUID=2222 / btrfs {root_option} 0 0\nUUID=2222 /home btrfs subvol=@home 0 0\n"
             "UUID=1111 /boot ext4 defaults 0 2\nUUID=3333 none swap sw 0 0\n")  # fmt: skip
    g = FakeGuest()
    roots = {"btrfsvol:/dev/sda2/@"} | ({"/dev/sda2"} if default == "btrfs_get_default.txt" else set())

    def at_root() -> bool:
        return g.mounted.get("/", "") in roots

    def appliance_command(argv: list[str]) -> str:
        assert argv[-1] == "/sysroot" and g.mounted == {"/": "/dev/sda2"}, "the btrfs alone, for the asking"
        name = {"-R": "btrfs_subvolume_list.txt", "-r": "btrfs_subvolume_list_ro.txt", "get-default": default,
                "--raw": "btrfs_show_single.txt"}  # fmt: skip
        return (DATA / name[argv[-2]]).read_text()

    g.replies = {
        "list_devices": ["/dev/sda"],
        "list_partitions": [f"/dev/sda{n}" for n in PARTS],
        "part_to_dev": "/dev/sda",
        "part_to_partnum": lambda part: int(part.removeprefix("/dev/sda")),
        "part_get_parttype": "msdos",
        "part_list": [{"part_num": n, "part_start": s, "part_size": z, "part_end": s + z - 1}
                      for n, (s, z) in PARTS.items()],
        "blockdev_getsize64": 4096 << 20,
        "blockdev_getss": 512,
        "blkid": lambda dev: BTRFS_BLKID[dev],
        "appliance_command": appliance_command,
        "is_file": lambda path: path == "/etc/fstab" and at_root(),
        "is_dir": lambda path: path in ("/etc", "/usr/bin") and at_root(),
        "read_file": fstab.encode(),
        "statvfs": {"blocks": 1000, "bfree": 400, "frsize": 4096},
        "tune2fs_l": {"Filesystem features": "has_journal extent", "Block size": "4096", "Inode size": "256"},
    }  # fmt: skip
    return g


@pytest.mark.parametrize(
    ("default", "root_option", "root_mount"),
    [("btrfs_get_default_top.txt", "subvol=@,compress=zstd", "btrfsvol:/dev/sda2/@"),
     ("btrfs_get_default.txt", "defaults", "/dev/sda2")],
    ids=["root-named-by-subvol", "root-is-the-default-subvolume"],
)  # fmt: skip
def test_probe_image_finds_the_root_in_a_subvolume_and_records_them_all(default: str, root_option: str,
                                                                        root_mount: str) -> None:  # fmt: skip
    g = btrfs_guest(default, root_option)
    layout, sources = probe_image(g, ["btrfs.qcow2"])
    assert [(f.id, f.device, f.type, f.mountpoint, f.options) for f in layout.filesystems] == [
        ("fs-root", "part-sda2", FsType.BTRFS, "/", root_option),
        ("fs-boot", "part-sda1", FsType.EXT4, "/boot", "defaults"),
    ]
    assert [(s.path, s.mountpoint, s.options, s.default, s.readonly, s.snapshot) for s in layout.subvolumes] == [
        ("@", "/", root_option, default == "btrfs_get_default.txt", False, False),
        ("@home", "/home", "subvol=@home", False, False, False),
        ("@/.snapshots", "", "", False, False, False),
        ("@home/we ird", "", "", False, False, False),
        ("@/.snapshots/1/snapshot", "", "", False, True, True),
    ]
    assert [(s.fs_id, s.mountable, s.mountpoint) for s in sources] == [
        ("fs-root", root_mount, "/"),
        ("fs-boot", "/dev/sda1", "/boot"),
        ("fs-home", "btrfsvol:/dev/sda2/@home", "/home"),
    ]
    assert [s.id for s in layout.swaps] == ["swap-sda3"] and g.mounted == {}


def test_a_plain_btrfs_has_no_subvolumes_and_is_probed_as_before() -> None:
    g = btrfs_guest("btrfs_get_default_top.txt", "defaults")
    show = (DATA / "btrfs_show_single.txt").read_text()
    g.replies["appliance_command"] = lambda argv: {"get-default": "ID 5 (FS_TREE)\n", "--raw": show}.get(argv[-2], "")
    g.replies["is_file"] = lambda path: path == "/etc/fstab" and g.mounted.get("/") == "/dev/sda2"
    g.replies["is_dir"] = lambda path: path in ("/etc", "/usr/bin") and g.mounted.get("/") == "/dev/sda2"
    g.replies["read_file"] = b"UUID=2222 / btrfs defaults 0 0\nUUID=1111 /boot ext4 defaults 0 2\n"
    layout, sources = probe_image(g, ["plain-btrfs.img"])
    assert layout.subvolumes == () and [f.mountpoint for f in layout.filesystems] == ["/", "/boot"]
    assert [s.mountable for s in sources] == ["/dev/sda2", "/dev/sda1"]


def test_a_btrfs_on_several_devices_is_refused_by_name() -> None:
    """btrfs-progs' own listing of a raid1 btrfs over two loop devices (tests/data/probe/btrfs_show_multi.txt):
    the image probe names the device and both of the filesystem's, in one line."""
    assert btrfs.parse_devices((DATA / "btrfs_show_single.txt").read_text()) == ["/dev/loop0"]
    g = btrfs_guest("btrfs_get_default_top.txt", "subvol=@")
    answer = g.replies["appliance_command"]
    multi = (DATA / "btrfs_show_multi.txt").read_text()
    g.replies["appliance_command"] = lambda argv: multi if argv[-2] == "--raw" else answer(argv)  # type: ignore[operator]
    with pytest.raises(LayoutError, match=r"^/dev/sda2: a btrfs on 2 devices \(/dev/loop0, /dev/loop1\) \(this") as e:
        probe_image(g, ["raid1-btrfs.qcow2"])
    assert "multi-device btrfs is not supported yet" in (e.value.hint or "")
    with pytest.raises(ValueError, match="no device"):
        btrfs.parse_devices("")


# -- this host: the running system's btrfs (hand-written findmnt/lsblk in their shapes), and a real loop device ---
def running_btrfs_runner() -> FakeRunner:
    findmnt = {"filesystems": [
        {"target": "/", "source": "/dev/vda2", "fstype": "btrfs", "fsroot": "/@", "maj:min": "0:30",
         "options": "rw,relatime,compress=zstd:3,space_cache=v2,subvolid=256,subvol=/@",
         "size": 2 << 30, "used": 1 << 30},
        {"target": "/boot", "source": "/dev/vda1", "fstype": "ext4", "fsroot": "/", "maj:min": "254:1",
         "options": "rw,relatime", "size": 255 << 20, "used": 50 << 20},
        {"target": "/home", "source": "/dev/vda2", "fstype": "btrfs", "fsroot": "/@home", "maj:min": "0:30",
         "options": "rw,relatime,space_cache=v2,subvolid=257,subvol=/@home", "size": 2 << 30, "used": 1 << 30},
        {"target": "/proc", "source": "proc", "fstype": "proc", "fsroot": "/", "maj:min": "0:20", "options": "rw"},
    ]}  # fmt: skip
    part = {"type": "part", "pkname": "/dev/vda", "log-sec": 512}
    lsblk = {"blockdevices": [{"name": "/dev/vda", "kname": "/dev/vda", "type": "disk", "size": 4 << 30,
                               "pttype": "dos", "ptuuid": "0b0b0b0b", "log-sec": 512, "children": [
        {**part, "name": "/dev/vda1", "kname": "/dev/vda1", "size": 256 << 20, "fstype": "ext4", "uuid": "1111",
         "start": 2048, "parttype": "0x83", "mountpoints": ["/boot"], "maj:min": "254:1"},
        {**part, "name": "/dev/vda2", "kname": "/dev/vda2", "size": 2 << 30, "fstype": "btrfs", "uuid": "2222",
         "start": 526336, "parttype": "0x83", "mountpoints": ["/home", "/"], "maj:min": "254:2"}]}]}  # fmt: skip
    return FakeRunner({
        ("findmnt", "--json"): json.dumps(findmnt),
        tuple(LSBLK): json.dumps(lsblk),
        ("blkid",): fail(2),
        ("dumpe2fs", "-h", "/dev/vda1"): (DATA / "dumpe2fs_ext4.txt").read_text(),
        (*btrfs.LIST, "/"): (DATA / "btrfs_subvolume_list.txt").read_bytes(),
        (*btrfs.LIST_READONLY, "/"): (DATA / "btrfs_subvolume_list_ro.txt").read_bytes(),
        (*btrfs.GET_DEFAULT, "/"): (DATA / "btrfs_get_default_top.txt").read_text(),
        (*btrfs.SHOW, "/"): (DATA / "btrfs_show_single.txt").read_text(),
    })  # fmt: skip


def test_probe_running_records_each_subvolume_mount_of_the_root_btrfs() -> None:
    runner = running_btrfs_runner()
    layout, sources = probe_running(runner, read_table=lambda path: None)
    assert [(f.id, f.device, f.mountpoint) for f in layout.filesystems] == [
        ("fs-root", "part-vda2", "/"),
        ("fs-boot", "part-vda1", "/boot"),
    ]
    mounted = [(s.path, s.mountpoint, s.options.rsplit(",", 1)[-1]) for s in layout.subvolumes if s.mountpoint]
    assert mounted == [("@", "/", "subvol=/@"), ("@home", "/home", "subvol=/@home")]
    assert len(layout.subvolumes) == 5 and [s.mountpoint for s in sources] == ["/", "/boot"]
    assert not [c for c in runner.calls if c[0] in ("pvs", "lvs")]  # lsblk names every type: no LVM here


# -- the real fixtures (fixtures/stacks.py), through a real appliance -----------------------------------------------
@pytest.mark.integration
@pytest.mark.parametrize("name", ["btrfs", "btrfs-default"])
def test_real_btrfs_fixture_root_found_in_its_subvolume_and_recorded(name: str) -> None:
    """btrfs: / is subvolume @ (fstab subvol=@), a snapper snapshot of it in @/.snapshots; btrfs-default: / is the
    default subvolume @rootfs (no subvol= in fstab). Both: @home at /home."""
    from fixtures.stacks import fixture_path

    image = fixture_path(name)
    g = Appliance()
    g.add_drive(str(image), readonly=True, format="qcow2")
    with g:
        layout, sources = probe_image(g, [str(image)])
        assert g.mounts() == []
    root = layout.filesystem_at("/")
    assert root is not None and (root.type, root.device) == (FsType.BTRFS, "part-sda2")
    subs = {s.path: s for s in layout.subvolumes}
    top = "@" if name == "btrfs" else "@rootfs"
    assert (subs[top].mountpoint, subs[top].default, subs["@home"].mountpoint) == ("/", name != "btrfs", "/home")
    if name == "btrfs":
        snap = subs["@/.snapshots/1/snapshot"]
        assert (snap.readonly, snap.snapshot, snap.mountpoint, subs["@/.snapshots"].snapshot) == (True, True, "", False)
        assert "subvol=@" in subs["@"].options
    else:
        assert set(subs) == {"@rootfs", "@home"}
    assert [(s.mountpoint, s.subvol) for s in sources if s.device == "/dev/sda2"] == [
        ("/", "@" if name == "btrfs" else ""),
        ("/home", "@home"),
    ]
    assert [f.mountpoint for f in layout.filesystems] == ["/", "/boot"] and len(layout.swaps) == 1
