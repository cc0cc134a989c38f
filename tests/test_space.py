"""Filesystem space arithmetic, checked against numbers measured on real mkfs output (and, integration, live)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from imgclone.fs import space
from imgclone.model.layout import Disk, Filesystem, FsType, Layout, LogicalVolume, Partition, VolumeGroup
from imgclone.units import GiB, MiB
from tests.loopfs import loop_fs

# Blocks in use on a fresh filesystem (dumpe2fs -h: block count - free blocks), MiB, e2fsprogs 1.47.0 defaults.
MEASURED_EXT = {
    "ext2": {8: 0.55, 32: 2.40, 300: 20.89, 511: 34.29, 512: 8.44, 1024: 17.36, 4096: 72.30, 16384: 301.07},
    "ext3": {8: 1.55, 32: 6.42, 300: 28.92, 511: 42.32, 512: 24.46, 1024: 49.39, 4096: 136.37, 131072: 3141.09},
    "ext4": {8: 1.58, 64: 9.29, 300: 28.90, 512: 24.82, 2048: 102.17, 16384: 429.15, 200000: 4223.76},
}
# size - free blocks of a fresh mount (statfs), MiB, xfsprogs 6.1.0
MEASURED_XFS = {300: 80.91, 512: 92.98, 1024: 102.97, 4096: 124.40, 16384: 210.07}
# size - what a file could fill (writing zeros until ENOSPC), MiB, btrfs-progs 6.2
MEASURED_BTRFS = {128: 81, 512: 81, 1024: 120, 2048: 222, 4096: 529}


def test_ext_model_matches_mke2fs_within_one_percent() -> None:
    for fstype, table in MEASURED_EXT.items():
        for size_mib, measured in table.items():
            size = size_mib * MiB
            bs = space.ext_geometry(size)[0]
            delalloc = min(size // bs // 50, 4096) * bs if fstype == "ext4" else 0  # held back by the kernel
            model = (space.overhead_bytes(fstype, size) - delalloc) / MiB
            assert model == pytest.approx(measured, rel=0.01, abs=0.05), (fstype, size_mib)


def test_ext_model_follows_a_given_block_and_inode_size() -> None:
    # ext4 made with mke2fs -b BLOCK -I INODE (the source's, fsfeatures): blocks in use, MiB, e2fsprogs 1.47.0
    measured = {(300, 4096, 256): 35.10, (2048, 1024, 256): 51.71, (300, 1024, 512): 47.53, (1024, 4096, 128): 42.61}
    for (size_mib, bs, inode), used in measured.items():
        size = size_mib * MiB
        delalloc = min(size // bs // 50, 4096) * bs
        model = (space.overhead_bytes("ext4", size, block_size=bs, inode_size=inode) - delalloc) / MiB
        assert model == pytest.approx(used, rel=0.01), (size_mib, bs, inode)


def test_xfs_and_btrfs_models_match_measurements() -> None:
    for size_mib, measured in MEASURED_XFS.items():
        assert space.overhead_bytes("xfs", size_mib * MiB) / MiB == pytest.approx(measured, rel=0.03)
    for size_mib, measured in MEASURED_BTRFS.items():  # conservative: never below, at most a third above
        model = space.overhead_bytes("btrfs", size_mib * MiB) / MiB
        assert measured * 0.99 <= model <= measured * 1.33, size_mib


def test_mke2fs_journal_table() -> None:
    table = {2047: 0, 2048: 1024, 32767: 1024, 32768: 4096, 262144: 8192, 524288: 16384, 4194304: 32768}
    table |= {33554431: 32768, 33554432: 262144}
    assert {blocks: space.ext_journal_blocks(blocks) for blocks in table} == table
    # with 4 KiB blocks: 16 MiB below 1 GiB, 32 MiB below 2 GiB, 64 below 16 GiB, 128 below 128 GiB, then 1 GiB
    journal = space.overhead_bytes("ext3", 20 * GiB) - space.overhead_bytes("ext2", 20 * GiB)
    assert journal == 128 * MiB


def test_ext_geometry_follows_mke2fs_conf() -> None:
    assert space.ext_geometry(2 * MiB) == (1024, 8192)
    assert space.ext_geometry(511 * MiB) == (1024, 4096)
    assert space.ext_geometry(512 * MiB) == (4096, 16384)
    assert space.ext_geometry(5 << 40) == (4096, 32768)
    assert space.ext_geometry(17 << 40) == (4096, 65536)
    assert space.ext_inodes(4 * GiB) == 262144
    assert space.ext_inodes(300 * MiB) == 76912  # mke2fs rounds inodes up to whole inode-table blocks per group


def test_minimums() -> None:
    assert space.minimum_bytes("xfs") == 300 * MiB
    assert space.minimum_bytes("btrfs") == 114294784
    assert space.minimum_bytes("ext4") == 8 * MiB
    assert space.minimum_bytes("vfat") == 33 * MiB
    with pytest.raises(ValueError, match="unknown filesystem type"):
        space.minimum_bytes("ntfs")


@pytest.mark.parametrize("fstype", ["ext2", "ext3", "ext4", "xfs", "btrfs", "vfat"])
def test_required_bytes_is_monotonic_fits_and_respects_the_minimum(fstype: str) -> None:
    previous = 0
    for used in range(0, 3 * GiB, 3 * MiB + 12345):
        need = space.required_bytes(fstype, used)
        assert need % MiB == 0 and need >= space.minimum_bytes(fstype) and need >= previous
        assert space.fits(fstype, need, used + used // 10)
        assert need == space.minimum_bytes(fstype) or not space.fits(fstype, need - MiB, used + used // 10)
        previous = need
    assert space.required_bytes(fstype, 0) == space.minimum_bytes(fstype)
    assert space.required_bytes(fstype, GiB, margin=0.5) > space.required_bytes(fstype, GiB)


def test_overhead_is_monotonic_within_each_mke2fs_geometry_and_for_the_others() -> None:
    for fstype in ("ext2", "xfs", "btrfs", "vfat"):  # ext3/4 drop at journal steps, as mke2fs does
        sizes = range(space.minimum_bytes(fstype), 8 * GiB, 5 * MiB + 4096)
        usable = [size - space.overhead_bytes(fstype, size) for size in sizes]
        assert usable == sorted(usable), fstype
    for lo, hi in ((8 * MiB, 32 * MiB), (32 * MiB, 256 * MiB), (GiB, 2 * GiB), (2 * GiB, 16 * GiB)):
        over = [space.overhead_bytes("ext4", size) for size in range(lo, hi, 3 * MiB)]
        assert over == sorted(over)


def test_required_bytes_counts_files() -> None:
    need = space.required_bytes("ext4", 100 * MiB, files=100000)
    assert space.ext_inodes(need) >= 110000
    assert not space.fits("ext4", 4 * GiB, MiB, files=300000)
    assert space.required_bytes("xfs", GiB, files=1_000_000) >= space.required_bytes("xfs", GiB) + 1_000_000 * 512
    assert space.files_cost("ext4", "xfs", 10) == 10  # ext's used did not count inodes
    assert space.files_cost("xfs", "xfs", 10) == 0  # xfs's used did
    assert space.files_cost("xfs", "ext4", 10) == 10  # ext must have the inodes


def test_conversion_rules() -> None:
    assert space.conversion_refusal("ext3", "ext4") is None
    assert space.conversion_refusal("ext2", "ext3") is None
    assert space.conversion_refusal("xfs", "btrfs") is None
    assert "never converted" in (space.conversion_refusal("vfat", "ext4") or "")
    assert "cannot hold what ext4 can" in (space.conversion_refusal("ext4", "ext3") or "")
    assert "cannot hold what xfs can" in (space.conversion_refusal("xfs", "ext2") or "")
    assert "unknown" in (space.conversion_refusal("jfs", "ext4") or "")


def test_labels_and_options() -> None:
    assert space.fit_label("xfs", "home-directories") == "home-directo"
    assert space.fit_label("ext4", "home-directories") == "home-directories"
    assert space.fit_label("xfs", "données-maison") == "données-mai"  # 12 bytes: é takes 2
    assert space.fit_label("xfs", "abcdefghijké") == "abcdefghijk"  # never half a character
    assert space.portable_options("errors=remount-ro,noatime,x-systemd.automount,user_xattr") == (
        "noatime,x-systemd.automount",
        ["errors=remount-ro", "user_xattr"],
    )
    assert space.portable_options("subvol=@") == ("defaults", ["subvol=@"])


def test_convert_filesystem() -> None:
    fs = Filesystem("fs-x", "lv-x", FsType.EXT4, "/x", GiB, MiB, "u", "a-very-long-label", "data=journal", {"e": 1})
    same, warnings = space.convert_filesystem(fs, "ext4", "lv-y", 2 * GiB)
    assert (same.device, same.size, same.uuid, same.features, warnings) == ("lv-y", 2 * GiB, "", {"e": 1}, [])
    made, warnings = space.convert_filesystem(fs, "xfs", "lv-y", 2 * GiB)
    assert (made.type, made.label, made.options, made.features) == (FsType.XFS, "a-very-long-", "defaults", {})
    assert len(warnings) == 2


def test_layout_checks_and_free_space() -> None:
    layout = Layout(
        disks=(Disk("disk-t0", "/t", 4 * GiB),),
        partitions=(Partition("part-t0-1", "disk-t0", 1, MiB, 2 * GiB + MiB),),
        vgs=(VolumeGroup("vg-a", "altinst_a", ("part-t0-1",)),),
        lvs=(LogicalVolume("lv-a", "alt_a", "vg-a", GiB),),
        filesystems=(Filesystem("fs-a", "lv-a", FsType.XFS, "/a", GiB, 990 * MiB),),
    )
    assert space.free_bytes(layout) == (4 * GiB - 2 * GiB - 2 * MiB, GiB)
    (problem,) = space.space_problems(layout, {"fs-a": "ext4"}, {})
    assert problem.startswith("filesystem /a (fs-a): needs 1095 MiB for 990 MiB of data as xfs, the target gives 1024")
    assert space.minimum_problems(layout, {"fs-a": "ext4"}) == []


# -- against the real tools -------------------------------------------------------------------------------------
def _fill(mnt: Path) -> int:
    """Bytes one file can take (allocated as root, like the restore) before ENOSPC."""
    fd = os.open(mnt / "fill", os.O_CREAT | os.O_WRONLY)
    try:
        offset, step = 0, MiB
        while step >= 4096:
            try:
                os.posix_fallocate(fd, offset, step)
                offset += step
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                step //= 2
        os.fsync(fd)
        return offset
    finally:
        os.close(fd)


@pytest.mark.integration
@pytest.mark.parametrize("fstype", ["ext4", "xfs", "btrfs"])
def test_overhead_against_a_real_filesystem(tmp_path: Path, fstype: str) -> None:
    if not shutil.which(f"mkfs.{fstype}"):
        pytest.fail(f"mkfs.{fstype} is missing (make setup installs it)")
    size = 512 * MiB
    with loop_fs(tmp_path, fstype, size // MiB, name=fstype) as mnt:
        measured = size - _fill(mnt)
    model = space.overhead_bytes(fstype, size)
    assert model == pytest.approx(measured, rel=0.25)
    assert model >= measured * 0.97  # errs on the safe side
