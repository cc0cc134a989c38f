"""Layouts shared by tests: the version 2 kinds (btrfs subvolumes, thin pools and thin LVs)."""

from __future__ import annotations

from imgclone.model.layout import (
    Disk,
    Filesystem,
    FsType,
    Layout,
    LogicalVolume,
    LvKind,
    Partition,
    Subvolume,
    VolumeGroup,
)

MIB, GIB = 1 << 20, 1 << 30


def stacks() -> Layout:
    """The btrfs fixture's shape (/boot ext4, btrfs with @ at /, @home, a nested snapper snapshot) beside a VG
    with a thin pool and a thin LV."""
    disk = Disk("disk-sda", "/dev/sda", 8 * GIB)
    parts = (Partition("part-sda1", "disk-sda", 1, MIB, 256 * MIB),
             Partition("part-sda2", "disk-sda", 2, 257 * MIB, 4 * GIB),
             Partition("part-sda3", "disk-sda", 3, 257 * MIB + 4 * GIB, 2 * GIB))  # fmt: skip
    pool = LogicalVolume("lv-vg0-pool", "pool", "vg-vg0", GIB, kind=LvKind.THIN_POOL, chunk_size=64 * 1024,
                         metadata_size=4 * MIB)  # fmt: skip
    thin = LogicalVolume("lv-vg0-data", "data", "vg-vg0", 3 * GIB, kind=LvKind.THIN, pool="lv-vg0-pool")
    fss = (Filesystem("fs-root", "part-sda2", FsType.BTRFS, "/", 4 * GIB),
           Filesystem("fs-boot", "part-sda1", FsType.EXT4, "/boot", 256 * MIB),
           Filesystem("fs-data", "lv-vg0-data", FsType.XFS, "/data", 3 * GIB))  # fmt: skip
    subs = (Subvolume("sv-root-home", "fs-root", "@home", "/home", "subvol=@home", source_id=257),
            Subvolume("sv-root-at", "fs-root", "@", "/", "subvol=@,compress=zstd", source_id=256),
            Subvolume("sv-root-snap", "fs-root", "@/.snapshots/1/snapshot", readonly=True, snapshot=True))  # fmt: skip
    return Layout(disks=(disk,), partitions=parts, vgs=(VolumeGroup("vg-vg0", "vg0", ("part-sda3",)),),
                  lvs=(pool, thin), filesystems=fss, subvolumes=subs)  # fmt: skip
