"""The features a restored filesystem is made with, and the mkfs options that make them (checked on real mkfs)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from imgclone.fs import features as fsfeatures
from imgclone.fs import space
from imgclone.model.layout import Filesystem, FsType
from imgclone.units import GiB, MiB, TiB

# tune2fs -l of a Debian 12 ext4 root and of an ext3 made by an older mke2fs (128-byte inodes)
EXT4 = "has_journal ext_attr resize_inode dir_index filetype needs_recovery extent 64bit flex_bg sparse_super "
EXT4 += "large_file huge_file dir_nlink extra_isize metadata_csum"
EXT3 = "has_journal ext_attr resize_inode dir_index filetype sparse_super large_file"
WHAT = "filesystem / (fs-root)"


def ext(features: str, block: int = 4096, inode: int = 256) -> dict[str, Any]:
    return {"ext_features": features.split(), "block_size": block, "inode_size": inode}


def test_ext_keeps_the_source_features_sizes_and_turns_the_rest_off() -> None:
    made, warnings = fsfeatures.carry("ext4", "ext4", ext(EXT4, 1024), 3 * GiB, WHAT)
    assert warnings == []  # needs_recovery (the source was mounted) is not a feature to make: dropped silently
    assert made == {"ext_features": [f for f in EXT4.split() if f != "needs_recovery"], "block_size": 1024,
                    "inode_size": 256}  # fmt: skip
    opts = fsfeatures.ext_mkfs_options(made)
    assert opts == {"features": "none," + ",".join(made["ext_features"]), "blocksize": 1024, "inode": 256}
    assert fsfeatures.ext_mkfs_options({}) == {}  # nothing recorded (converted from xfs): mke2fs's defaults


def test_upgrade_to_ext4_adds_its_features_and_room_in_the_inodes() -> None:
    made, warnings = fsfeatures.carry("ext3", "ext4", ext(EXT3, 4096, 128), GiB, WHAT)
    assert warnings == []
    added = ["extent", "huge_file", "flex_bg", "metadata_csum", "64bit", "dir_nlink", "extra_isize"]
    assert made["ext_features"] == [*EXT3.split(), *added]
    assert (made["block_size"], made["inode_size"]) == (4096, 256)
    same, _ = fsfeatures.carry("ext3", "ext3", ext(EXT3, 4096, 128), GiB, WHAT)
    assert same["inode_size"] == 128  # not an upgrade: kept as it was


def test_features_the_target_cannot_have_are_dropped_by_name() -> None:
    made, warnings = fsfeatures.carry("ext3", "ext2", ext(EXT3 + " extent"), GiB, WHAT)
    assert "has_journal" not in made["ext_features"] and "extent" not in made["ext_features"]
    why = "has_journal (ext2 has no journal), extent (ext2 cannot mount it)"
    assert warnings == [f"{WHAT}: ext2 is made without {why}"]
    made, warnings = fsfeatures.carry("ext4", "ext4", ext(EXT4 + " dirdata read-only"), GiB, WHAT)
    assert "dirdata" not in made["ext_features"] and "read-only" not in made["ext_features"]
    assert "dirdata (mke2fs 1.47.0 cannot make it)" in warnings[0] and "read-only (the restore writes" in warnings[0]


def test_a_block_size_the_size_cannot_use_is_left_to_mke2fs() -> None:
    made, warnings = fsfeatures.carry("ext3", "ext3", ext(EXT3, 1024), 5 * TiB, WHAT)
    assert "block_size" not in made and "block size 1024" in warnings[0]
    made, warnings = fsfeatures.carry("ext4", "ext4", ext(EXT4, 1024), 5 * TiB, WHAT)
    assert made["block_size"] == 1024 and warnings == []  # 64bit: more than 2^32 blocks are fine


def test_other_types_and_families() -> None:
    xfs = {"xfs": {"crc": 1, "reflink": 1, "blocksize": 4096}}
    assert fsfeatures.carry("xfs", "xfs", xfs, GiB, WHAT) == (xfs, [])
    assert fsfeatures.carry("ext4", "xfs", ext(EXT4), GiB, WHAT) == ({}, [])
    assert fsfeatures.carry("xfs", "ext4", xfs, GiB, WHAT) == ({}, [])
    assert fsfeatures.carry("vfat", "vfat", {"x": 1}, GiB, WHAT) == ({"x": 1}, [])


def test_xfs_command_lines() -> None:
    # probe_guest: xfs_info's names plus superblock bits
    guest = {"crc": 1, "finobt": 1, "rmapbt": 0, "reflink": 1, "bigtime": 1, "inobtcount": 1, "sparse": 1,
             "nrext64": 0, "ftype": 1, "inodesize": 512, "blocksize": 4096, "agcount": 4}  # fmt: skip
    assert fsfeatures.xfs_mkfs_argv({"xfs": guest}, "/dev/vg/var", "var") == [
        "mkfs.xfs", "-f", "-m", "crc=1,finobt=1,rmapbt=0,reflink=1,bigtime=1,inobtcount=1",
        "-i", "sparse=1,nrext64=0,size=512", "-b", "size=4096", "-L", "var", "/dev/vg/var",
    ]  # fmt: skip
    # probe_host on a v4 filesystem: crc=0 turns the v5-only features off; ftype is its own option
    host = {"crc": 0, "finobt": 0, "sparse": 0, "reflink": 0, "inode_size": 256, "ftype": 1, "blocksize": 4096}
    assert fsfeatures.xfs_mkfs_argv({"xfs": host}, "/dev/sda2") == [
        "mkfs.xfs", "-f", "-m", "crc=0,finobt=0,reflink=0", "-i", "sparse=0,size=256", "-n", "ftype=1",
        "-b", "size=4096", "/dev/sda2",
    ]  # fmt: skip
    assert fsfeatures.xfs_mkfs_argv({}, "/dev/sda2") is None


def test_fit_sizes_count_the_source_block_size() -> None:
    from imgclone.plan.planner import make_plan
    from imgclone.plan.types import PlanOptions, Resize, Target
    from tests.test_plan import load

    src = load("bios-lvm")
    root = src.filesystem_at("/")
    assert root is not None and root.type == FsType.EXT4

    def fit(features: dict[str, Any]) -> Filesystem:
        fs = tuple(replace(f, features=features) if f is root else f for f in src.filesystems)
        layout = replace(src, filesystems=fs)
        p = make_plan(layout, [Target("/t.img", 0)], PlanOptions(resize=Resize.FIT))
        made = p.target.filesystem_at("/")
        assert made is not None
        return made

    small, big = fit(ext(EXT4, 1024, 128)), fit(ext(EXT4, 4096, 512))
    assert (small.features["block_size"], big.features["inode_size"]) == (1024, 512)
    assert space.fits("ext4", big.size, root.used, block_size=4096, inode_size=512)
    assert big.size > small.size  # 512-byte inodes and 4 KiB blocks cost more than the model's defaults


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize(("old", "new"), [("ext4", "ext4"), ("ext3", "ext4"), ("ext3", "ext2")])
def test_mke2fs_makes_exactly_the_planned_features(tmp_path: Path, old: str, new: str) -> None:
    if not shutil.which("mke2fs"):
        pytest.fail("mke2fs is missing (make setup installs it)")
    source = ext(EXT4 if old == "ext4" else EXT3, 1024, 128)
    made, _ = fsfeatures.carry(old, new, source, 64 * MiB, WHAT)
    opts = fsfeatures.ext_mkfs_options(made)
    image = tmp_path / "fs.img"
    with open(image, "wb") as f:
        f.truncate(64 * MiB)
    # what libguestfs's mkfs runs for these options (daemon/mkfs.c)
    _run("mke2fs", "-q", "-t", new, "-F", "-b", str(opts["blocksize"]), "-O", opts["features"], "-I",
         str(opts["inode"]), str(image))  # fmt: skip
    fields = dict(line.split(":", 1) for line in _run("dumpe2fs", "-h", str(image)).splitlines() if ":" in line)
    assert sorted(fields["Filesystem features"].split()) == sorted(made["ext_features"])
    assert int(fields["Block size"]) == made["block_size"] and int(fields["Inode size"]) == made["inode_size"]


def test_mkfs_xfs_makes_the_recorded_parameters(tmp_path: Path) -> None:
    if not shutil.which("mkfs.xfs"):
        pytest.fail("mkfs.xfs is missing (make setup installs it)")
    recorded = {"crc": 1, "finobt": 1, "rmapbt": 1, "reflink": 0, "bigtime": 0, "inobtcount": 0, "sparse": 0,
                "inode_size": 1024, "blocksize": 2048}  # fmt: skip
    image = tmp_path / "xfs.img"
    with open(image, "wb") as f:
        f.truncate(320 * MiB)
    argv = fsfeatures.xfs_mkfs_argv({"xfs": recorded}, str(image), "data")
    assert argv is not None
    _run(*argv)
    version = _run("xfs_db", "-r", "-c", "version", str(image))
    assert "CRC" in version and "FINOBT" in version and "RMAPBT" in version
    assert "REFLINK" not in version and "BIGTIME" not in version and "SPARSE_INODES" not in version
    sb = _run("xfs_db", "-r", "-c", "sb 0", "-c", "print blocksize inodesize fname", str(image)).split()
    assert sb[:6] == ["blocksize", "=", "2048", "inodesize", "=", "1024"] and sb[8].startswith('"data\\000')
