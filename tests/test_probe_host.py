"""probe_host: the host's layout from findmnt, lsblk, LVM, blkid, pyparted, dumpe2fs and xfs_info.

Unit tests answer the commands from tests/data/probe/ (real outputs of this Debian 12 host,
and a hand-written BIOS + LVM machine in the same shapes); integration tests use loop devices.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgclone.errors import CommandError, ImgcloneError, UsageError
from imgclone.fs.features import ext_features
from imgclone.host.reports import parse_dumpe2fs, parse_lvm_report
from imgclone.host.run import HOST, Result
from imgclone.model.layout import FsType, PartFlag, TableType
from imgclone.probe import host as probe_host
from imgclone.probe.host import Source, probe_mounts, probe_running
from imgclone.probe.host_parsers import (
    LSBLK,
    LVS,
    PVS,
    flags_from_type,
    parse_blkid,
    parse_findmnt,
    parse_lsblk,
    parse_xfs_info,
)
from imgclone.probe.host_table import PartitionTable, ReadTable, TableEntry, read_partition_table
from tests.fakes import FakeRunner, Reply, fail

DATA = Path(__file__).parent / "data" / "probe"
FINDMNT = ("findmnt", "--json")
MIB, GIB = 1 << 20, 1 << 30


def data(name: str) -> str:
    return (DATA / name).read_text()


def no_table(path: str) -> PartitionTable | None:
    return None


def not_installed(argv: list[str], _input: bytes | None) -> Result:
    raise CommandError(argv, 127, f"{argv[0]}: command not found (run `make setup`)")


# -- a classic BIOS machine: sda msdos, sda1 /boot, sda2 PV of rootvg (root, var, swap); sdb /data
BIOS_TABLES = {
    "/dev/sda": PartitionTable(
        TableType.MSDOS,
        512,
        (
            TableEntry(1, 1 * MIB, 1 * GIB, (PartFlag.BOOT,)),
            TableEntry(2, 1025 * MIB, 20399984640, (PartFlag.LVM,)),
        ),
    ),
    "/dev/sdb": PartitionTable(TableType.MSDOS, 512, (TableEntry(1, 1 * MIB, 10736369664),)),
}


def bios_runner() -> FakeRunner:
    return FakeRunner(
        {
            FINDMNT: data("bios_findmnt.json"),
            tuple(LSBLK): data("bios_lsblk.json"),
            tuple(PVS): data("bios_pvs.json"),
            tuple(LVS): data("bios_lvs.json"),
            ("blkid",): fail(2),  # udev filled lsblk's columns: blkid has nothing to add here
            ("dumpe2fs", "-h"): data("dumpe2fs_ext4.txt"),
            ("xfs_info", "/var"): data("xfs_info.txt"),
        }
    )


@pytest.mark.parametrize("read_table", [BIOS_TABLES.get, no_table], ids=["pyparted", "lsblk"])
def test_probe_running_bios_lvm(read_table: ReadTable) -> None:
    runner = bios_runner()
    layout, sources = probe_running(runner, read_table=read_table)

    assert [d.id for d in layout.disks] == ["disk-sda"]  # not sdb: /data is not on rootvg's disks
    (sda,) = layout.disks
    assert (sda.path, sda.size, sda.table, sda.uuid) == ("/dev/sda", 20 * GIB, TableType.MSDOS, "5e3b4c2a")
    boot, pv = layout.partitions
    assert (boot.id, boot.number, boot.start, boot.size, boot.flags) == ("part-sda1", 1, MIB, GIB, (PartFlag.BOOT,))
    assert (pv.id, pv.start, pv.flags, pv.uuid, pv.type_uuid) == (
        "part-sda2",
        1025 * MIB,
        (PartFlag.LVM,),
        "5e3b4c2a-02",
        "",
    )
    (vg,) = layout.vgs
    assert (vg.id, vg.name, vg.pvs, vg.extent_size) == ("vg-rootvg", "rootvg", ("part-sda2",), 4 * MIB)
    assert vg.uuid == "fM3vK9-2pQr-8sTu-4vWx-1yZa-6bCd-7eFgHi"
    assert [(lv.id, lv.vg, lv.size) for lv in layout.lvs] == [
        ("lv-rootvg-root", "vg-rootvg", 10 * GIB),
        ("lv-rootvg-swap", "vg-rootvg", 2 * GIB),
        ("lv-rootvg-var", "vg-rootvg", 4 * GIB),
    ]

    fss = {f.mountpoint: f for f in layout.filesystems}
    assert list(fss) == ["/", "/boot", "/var"]  # no pseudo filesystems, no /data, no bind mount /srv/www
    root, bootfs, var = fss["/"], fss["/boot"], fss["/var"]
    assert (root.id, root.device, root.type, root.label) == ("fs-root", "lv-rootvg-root", FsType.EXT4, "root")
    assert root.uuid == "0b6a0c1e-4a39-4bd1-9c61-3d3f1a7e2b11"  # lsblk's, before dumpe2fs's
    assert (root.size, root.used, root.options) == (10464022528, 3245268992, "rw,relatime,errors=remount-ro")
    assert "metadata_csum" in root.features["ext_features"] and root.features["block_size"] == 1024
    assert (bootfs.id, bootfs.device, bootfs.label) == ("fs-boot", "part-sda1", "boot")
    assert (var.device, var.type) == ("lv-rootvg-var", FsType.XFS)
    assert var.features["xfs"]["reflink"] == 1 and var.features["xfs"]["blocksize"] == 4096
    (swap,) = layout.swaps
    assert (swap.id, swap.device, swap.size) == ("swap-rootvg-swap", "lv-rootvg-swap", 2 * GIB)
    assert swap.uuid == "5d2e6b0a-0c55-4f4e-a1c2-58f0a43c7f20"

    assert sources == [Source("fs-root", "/"), Source("fs-boot", "/boot"), Source("fs-var", "/var")]
    assert not any(c[0] == "dumpe2fs" and c[-1] == "/dev/sdb1" for c in runner.calls)
    layout.validate()


def test_probe_mounts_picks_only_the_given_filesystem() -> None:
    layout, sources = probe_mounts(["/data/"], bios_runner(), read_table=BIOS_TABLES.get)
    assert [d.id for d in layout.disks] == ["disk-sdb"]
    assert [p.id for p in layout.partitions] == ["part-sdb1"]
    assert layout.vgs == () and layout.lvs == () and layout.swaps == ()
    (data_fs,) = layout.filesystems
    assert (data_fs.id, data_fs.device, data_fs.mountpoint) == ("fs-data", "part-sdb1", "/data")
    assert sources == [Source("fs-data", "/data")]


def test_msdos_extended_partition_is_left_out() -> None:
    """sdb1 is an extended partition holding logical sdb5: the layout has no containers, only sdb5."""
    tree = json.loads(data("bios_lsblk.json"))
    sdb1 = tree["blockdevices"][1]["children"][0]
    sdb5 = {**sdb1, "name": "/dev/sdb5", "kname": "/dev/sdb5", "start": 4096, "size": sdb1["size"] - MIB}
    sdb1.update(size=1024, parttype="0x5", fstype=None, uuid=None, mountpoints=[None])
    tree["blockdevices"][1]["children"].append(sdb5)
    runner = bios_runner()
    runner.add(tuple(LSBLK), json.dumps(tree))
    runner.add(FINDMNT, data("bios_findmnt.json").replace('"/dev/sdb1"', '"/dev/sdb5"'))
    layout, _ = probe_mounts(["/data"], runner, read_table=no_table)
    assert [(p.id, p.number, p.start) for p in layout.partitions] == [("part-sdb5", 5, 2 * MIB)]
    assert layout.filesystems[0].device == "part-sdb5"


def test_probe_mounts_on_an_lv_records_its_vg_and_disk() -> None:
    layout, _ = probe_mounts(["/var"], bios_runner(), read_table=BIOS_TABLES.get)
    assert [d.id for d in layout.disks] == ["disk-sda"]
    assert [v.id for v in layout.vgs] == ["vg-rootvg"]
    assert [f.id for f in layout.filesystems] == ["fs-var"] and layout.swaps == ()


# -- this host: ext4 on the whole of /dev/vda, no udev, the device itself unreadable, no LVM
def vda_runner(lvm: Reply | None = None) -> FakeRunner:
    return FakeRunner(
        {
            FINDMNT: data("vda_findmnt.json"),
            tuple(LSBLK): data("vda_lsblk.json"),
            ("pvs",): lvm or data("empty_pvs.json"),
            ("lvs",): lvm or data("empty_lvs.json"),
            ("blkid",): fail(2, "blkid: error: /dev/vda: Operation not permitted"),
            ("dumpe2fs",): fail(1, data("vda_dumpe2fs.err")),
        }
    )


@pytest.mark.parametrize(
    "lvm",
    [None, not_installed, fail(5, "Failure to communicate with kernel device-mapper driver.")],
    ids=["no-vg", "no-lvm2", "no-device-mapper"],
)
def test_probe_running_whole_disk(lvm: Reply | None, caplog: pytest.LogCaptureFixture) -> None:
    layout, sources = probe_running(vda_runner(lvm), read_table=no_table)
    (disk,) = layout.disks
    assert (disk.id, disk.path, disk.table, disk.size) == ("disk-vda", "/dev/vda", TableType.NONE, 274877906944)
    assert layout.partitions == () and layout.vgs == () and layout.lvs == () and layout.swaps == ()
    (root,) = layout.filesystems  # none of the proc, sysfs, tmpfs, cgroup, devpts mounts
    assert (root.id, root.device, root.type, root.mountpoint) == ("fs-root", "disk-vda", FsType.EXT4, "/")
    assert root.size > root.used > 0 and root.uuid == "" and root.features == {}
    assert sources == [Source("fs-root", "/")]
    assert "cannot read the filesystem features" in caplog.text and "Operation not permitted" in caplog.text


def test_probe_running_refuses_a_pseudo_root() -> None:
    runner = vda_runner()
    runner.add(FINDMNT, '{"filesystems": [{"target": "/", "source": "overlay", "fstype": "overlay"}]}')
    with pytest.raises(ImgcloneError, match="^/: overlay on overlay is not a block-device filesystem"):
        probe_running(runner, read_table=no_table)


# -- probe_mounts on a loop device with ext4 and no table (real outputs, udev-less host)
def loop_runner() -> FakeRunner:
    return FakeRunner(
        {
            FINDMNT: data("loop_findmnt.json"),
            tuple(LSBLK): data("loop_lsblk.json"),
            ("pvs",): data("empty_pvs.json"),
            ("lvs",): data("empty_lvs.json"),
            ("blkid",): fail(2),
            ("blkid", "-p", "-o", "export", "/dev/loop0"): data("loop_blkid.txt"),
            ("dumpe2fs", "-h", "/dev/loop0"): data("dumpe2fs_ext4_mounted.txt"),
        }
    )


def test_probe_mounts_loop_device() -> None:
    as_parted = PartitionTable(TableType.NONE, 512)  # pyparted's "loop" label: a filesystem, no table
    layout, sources = probe_mounts(["/mnt/imgclone-test/"], loop_runner(), read_table=lambda p: as_parted)
    (disk,) = layout.disks
    assert (disk.id, disk.path, disk.table, disk.size) == ("disk-loop0", "/dev/loop0", TableType.NONE, 64 * MIB)
    (fs,) = layout.filesystems
    assert (fs.id, fs.device, fs.type, fs.mountpoint) == (
        "fs-mnt-imgclone-test",
        "disk-loop0",
        FsType.EXT4,
        "/mnt/imgclone-test",
    )
    assert (fs.uuid, fs.label) == ("35eb0f6c-39ba-461e-87b7-ecd7afe9d6bd", "looproot")  # from blkid -p
    assert (fs.size, fs.used, fs.options) == (57381888, 14336, "rw,relatime")
    assert "needs_recovery" not in fs.features["ext_features"] and "has_journal" in fs.features["ext_features"]
    assert sources == [Source("fs-mnt-imgclone-test", "/mnt/imgclone-test")]


def test_a_filesystem_on_a_whole_disk_asks_neither_lvm_nor_libparted() -> None:
    """blkid names the loop device's ext4: no PV can be there (pvs + lvs cost 0.1 s), no table to read (libparted
    probes and flushes the device)."""
    runner, tables = loop_runner(), []
    layout, _ = probe_mounts(["/mnt/imgclone-test"], runner, read_table=lambda p: tables.append(p))
    assert layout.disks[0].table == TableType.NONE and layout.vgs == ()
    assert tables == [] and not [c for c in runner.calls if c[0] in ("pvs", "lvs")]


@pytest.mark.parametrize("signature", ["", "TYPE=LVM2_member\n"], ids=["unknown", "pv"])
def test_a_device_that_is_or_may_be_a_pv_asks_lvm(signature: str) -> None:
    """A device blkid cannot name (or names a PV) on the same disks: pvs is asked (and lvs only for a VG)."""
    runner = loop_runner()
    runner.add(("blkid", "-p", "-o", "export", "/dev/loop0"), signature)
    probe_mounts(["/mnt/imgclone-test"], runner, read_table=no_table)
    asked = [c[0] for c in runner.calls if c[0] in ("pvs", "lvs")]
    assert asked == ["pvs"]


def test_probe_running_whole_disk_unknown_to_blkid_asks_lvm() -> None:
    """vda: no udev, blkid not allowed to read it: LVM is asked (the no-lvm2 and no-device-mapper cases above)."""
    runner = vda_runner()
    probe_running(runner, read_table=no_table)
    assert [c[0] for c in runner.calls if c[0] in ("pvs", "lvs")] == ["pvs"]


@pytest.mark.parametrize(
    ("mounts", "message"),
    [
        (["/mnt"], "^--mount /mnt: not a mount point"),
        (["/mnt/imgclone-test/sub"], "^--mount /mnt/imgclone-test/sub: not a mount point"),
        (["/dev/shm"], "^--mount /dev/shm: tmpfs filesystems cannot be captured"),
        (["/mnt/imgclone-test", "/mnt/../mnt/imgclone-test/."], None),  # the same directory: once
        ([], "^no mount point given"),
    ],
)
def test_probe_mounts_usage_errors(mounts: list[str], message: str | None) -> None:
    if message is None:
        layout, _ = probe_mounts(mounts, loop_runner(), read_table=no_table)
        assert len(layout.filesystems) == 1
        return
    with pytest.raises(UsageError, match=message) as e:
        probe_mounts(mounts, loop_runner(), read_table=no_table)
    assert e.value.exit_code == 2 and "\n" not in str(e.value)


def test_probe_mounts_refuses_a_bind_mount() -> None:
    with pytest.raises(UsageError, match="^--mount /srv/www: a bind mount of /www on /dev/mapper/rootvg-var"):
        probe_mounts(["/var", "/srv/www"], bios_runner(), read_table=BIOS_TABLES.get)


def test_probe_mounts_same_filesystem_twice() -> None:
    runner = loop_runner()
    mounts = [{"target": t, "source": "/dev/loop0", "fstype": "ext4", "maj:min": "7:0"} for t in ("/mnt/a", "/mnt/b")]
    runner.add(FINDMNT, json.dumps({"filesystems": mounts}))
    with pytest.raises(UsageError, match="^--mount /mnt/b: the same filesystem as --mount /mnt/a$"):
        probe_mounts(["/mnt/a", "/mnt/b"], runner, read_table=no_table)


# -- parsers, each on a real sample
def test_parse_dumpe2fs_and_ext_features() -> None:
    fields = parse_dumpe2fs(data("dumpe2fs_ext4.txt"))
    assert fields["Filesystem UUID"] == "27431178-a93a-4429-9e90-10732252c95e"
    assert fields["Filesystem volume name"] == "<none>"
    assert ext_features(fields) == {
        "ext_features": [
            "has_journal", "ext_attr", "resize_inode", "dir_index", "filetype", "extent", "64bit", "flex_bg",
            "sparse_super", "large_file", "huge_file", "dir_nlink", "extra_isize", "metadata_csum",
        ],
        "block_size": 1024,
        "inode_size": 256,
    }  # fmt: skip


def test_parse_xfs_info() -> None:
    xfs = parse_xfs_info(data("xfs_info.txt"))["xfs"]
    assert {k: xfs[k] for k in ("crc", "reflink", "bigtime", "finobt", "rmapbt", "sparse", "inobtcount")} == {
        "crc": 1, "reflink": 1, "bigtime": 1, "finobt": 1, "rmapbt": 0, "sparse": 1, "inobtcount": 1,
    }  # fmt: skip
    assert (xfs["blocksize"], xfs["inode_size"], xfs["agcount"], xfs["ftype"], xfs["log_blocks"]) == (
        4096, 512, 4, 1, 16384,
    )  # fmt: skip


def test_parse_findmnt_flattens_the_tree_form() -> None:
    tree = '{"filesystems": [{"target": "/", "source": "/dev/vda", "fstype": "ext4", "size": "10", "used": 2,'
    tree += ' "children": [{"target": "/boot", "source": "/dev/vda1", "fstype": "vfat"}]}]}'
    assert [(m.target, m.size, m.used, m.fsroot) for m in parse_findmnt(tree)] == [
        ("/", 10, 2, "/"),
        ("/boot", 0, 0, "/"),
    ]


def test_parse_lsblk_records_every_parent() -> None:
    devs = parse_lsblk(data("bios_lsblk.json"))
    assert devs["/dev/mapper/rootvg-var"].parents == ["/dev/sda2"]
    assert devs["/dev/mapper/rootvg-var"].mountpoints == ("/srv/www", "/var")
    assert devs["/dev/sda"].children == ["/dev/sda1", "/dev/sda2"] and devs["/dev/sda1"].start == 2048
    assert devs["/dev/mapper/rootvg-swap"].mountpoints == ("[SWAP]",)
    assert devs["/dev/sdb"].mountpoints == () and "uuid" not in devs["/dev/sdb"].props


def test_parse_blkid_and_lvm_reports() -> None:
    assert parse_blkid(data("loop_blkid.txt")) == {
        "fstype": "ext4", "uuid": "35eb0f6c-39ba-461e-87b7-ecd7afe9d6bd", "label": "looproot",
    }  # fmt: skip
    part = "PART_ENTRY_SCHEME=gpt\nPART_ENTRY_NUMBER=2\nPART_ENTRY_OFFSET=4096\nPART_ENTRY_TYPE=c12a\n"
    assert parse_blkid(part) == {"partn": "2", "offset": "4096", "parttype": "c12a"}
    assert [r["pv_name"] for r in parse_lvm_report(data("bios_pvs.json"), "pv")] == ["/dev/sda2"]
    assert parse_lvm_report(data("empty_lvs.json"), "lv") == []
    assert parse_lvm_report("  /dev/mapper/control: open failed", "pv") == []


def test_flags_from_type() -> None:
    assert flags_from_type(TableType.MSDOS, "0x83", "0x80") == (PartFlag.BOOT,)
    assert flags_from_type(TableType.MSDOS, "0x8e", "") == (PartFlag.LVM,)
    assert flags_from_type(TableType.GPT, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "") == (PartFlag.BOOT, PartFlag.ESP)
    assert flags_from_type(TableType.GPT, "21686148-6449-6e6f-744e-656564454649", "") == (PartFlag.BIOS_GRUB,)
    assert flags_from_type(TableType.GPT, "0fc63daf-8483-4772-8e79-3d69d8477de4", "") == ()


# -- integration: real loop devices, the real HOST runner and pyparted
need_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("losetup") or not shutil.which("mkfs.ext4"), reason="needs root and e2fsprogs"
)


@pytest.fixture
def mounted_loop(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A sparse 64 MiB file with ext4, attached to a loop device and mounted; detached afterwards."""
    image, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    with image.open("wb") as f:
        f.truncate(64 * MIB)
    HOST.run(["mkfs.ext4", "-q", "-F", "-L", "probe-test", image])
    loop = HOST.run(["losetup", "--find", "--show", image]).text.strip()
    mnt.mkdir()
    try:
        HOST.run(["mount", loop, mnt])
        try:
            yield loop, mnt
        finally:
            HOST.run(["umount", mnt], check=False)
    finally:
        HOST.run(["losetup", "-d", loop], check=False)


@pytest.mark.integration
@need_root
def test_probe_mounts_real_loop(mounted_loop: tuple[str, Path]) -> None:
    loop, mnt = mounted_loop
    (mnt / "hello").write_text("hello\n")
    layout, sources = probe_mounts([str(mnt)])
    (disk,) = layout.disks
    assert (disk.path, disk.table, disk.size) == (loop, TableType.NONE, 64 * MIB)
    (fs,) = layout.filesystems
    assert (fs.type, fs.device, fs.mountpoint, fs.label) == (FsType.EXT4, disk.id, str(mnt), "probe-test")
    assert fs.uuid and fs.uuid == HOST.run(["blkid", "-p", "-s", "UUID", "-o", "value", loop]).text.strip()
    assert fs.used > 0 and fs.size > fs.used
    assert "has_journal" in fs.features["ext_features"]
    assert sources == [Source(fs.id, str(mnt))]
    # a fresh ext4 uses 11 inodes (10 reserved, lost+found); hello is the 12th
    assert probe_host.used_inodes(sources) == {fs.id: 12}


@pytest.mark.integration
@pytest.mark.skipif(not shutil.which("parted"), reason="needs parted")
def test_read_partition_table_real_gpt(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    with image.open("wb") as f:
        f.truncate(100 * MIB)
    HOST.run(["parted", "-s", image, "mklabel", "gpt", "mkpart", "grub", "1MiB", "2MiB", "set", "1", "bios_grub", "on"])
    HOST.run(["parted", "-s", image, "mkpart", "efi", "fat32", "2MiB", "34MiB", "set", "2", "esp", "on"])
    HOST.run(["parted", "-s", image, "mkpart", "root", "ext4", "34MiB", "99MiB"])
    table = read_partition_table(str(image))
    assert table is not None and (table.type, table.sector_size) == (TableType.GPT, 512)
    assert [(e.number, e.start, e.size, e.name, e.flags) for e in table.entries] == [
        (1, 1 * MIB, 1 * MIB, "grub", (PartFlag.BIOS_GRUB,)),
        (2, 2 * MIB, 32 * MIB, "efi", (PartFlag.BOOT, PartFlag.ESP)),
        (3, 34 * MIB, 65 * MIB, "root", ()),
    ]
    assert read_partition_table(str(tmp_path / "missing")) is None


def test_lv_kinds_from_lvms_report_of_a_thin_pool() -> None:
    """LVM's own report of the thin fixture's VG (read in the appliance: tests/data/probe/thin_lvs_kinds.json): the
    pool with its chunk and metadata sizes, the thin LV with its pool's id, the plain LV; a snapshot or a cache LV
    is a kind imgclone leaves out (None)."""
    from imgclone.probe.host_parsers import lv_kind

    rows = parse_lvm_report((DATA / "thin_lvs_kinds.json").read_text(), "lv")
    kinds = {r["lv_name"]: lv_kind(r["vg_name"], r) for r in rows}
    assert kinds == {
        "pool": {"kind": "thin-pool", "pool": "", "chunk_size": 65536, "metadata_size": 4 << 20},
        "root": {"kind": "thin", "pool": "lv-rootvg-pool"},
        "swap": {"kind": "linear", "pool": ""},
    }
    assert lv_kind("vg", {"segtype": "snapshot"}) is None and lv_kind("vg", {"segtype": "cache"}) is None
    assert lv_kind("vg", {}) == {"kind": "linear", "pool": ""}, "a report without segtype: a plain LV"


def test_probe_running_leaves_out_an_lv_of_a_kind_it_does_not_recreate(caplog: pytest.LogCaptureFixture) -> None:
    runner = bios_runner()
    doc = json.loads(data("bios_lvs.json"))
    doc["report"][0]["lv"].append({"vg_name": "rootvg", "lv_name": "snap", "lv_size": "1048576", "segtype": "snapshot"})
    runner.replies[tuple(LVS)] = json.dumps(doc)
    layout, _ = probe_running(runner, read_table=no_table)
    assert [lv.name for lv in layout.lvs] == ["root", "swap", "var"]
    assert "rootvg/snap: skipping a snapshot logical volume" in caplog.text
