"""Loop-mounted filesystems on sparse files: how tests stand in for real disks."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MKFS = {
    "ext4": ["mkfs.ext4", "-q", "-F"],
    "xfs": ["mkfs.xfs", "-q", "-f"],
    "ext3": ["mkfs.ext3", "-q", "-F"],
    "btrfs": ["mkfs.btrfs", "-q", "-f"],
}


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@contextmanager
def loop_fs(workdir: Path, fstype: str, size_mb: int = 320, name: str = "fs") -> Iterator[Path]:
    """A sparse file with a fresh filesystem, loop-mounted at workdir/name; yields the mount point."""
    backing = workdir / f"{name}.img"
    with open(backing, "wb") as f:
        f.truncate(size_mb * 1024 * 1024)
    sh(*MKFS[fstype], str(backing))
    mnt = workdir / name
    mnt.mkdir()
    dev = sh("losetup", "--find", "--show", str(backing)).strip()
    try:
        sh("mount", dev, str(mnt))
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=False)
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
