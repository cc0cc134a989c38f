"""Compare a restored target with the archive it came from, file by file, through libguestfs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from imgclone.guest.interface import Guest
from tests.treecmp import describe, diff

EXTRACT = ["tar", "-x", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "--selinux",
           "--same-permissions", "--same-owner", "--sparse"]  # fmt: skip


def extract_stream(archive: Path, fs_id: str, dst: Path) -> None:
    """The archive's stream of fs_id, extracted with stock tools."""
    dst.mkdir(parents=True)
    cmd = f"tar -xOf {archive} --wildcards 'streams/{fs_id}.tar.zst.*' | zstd -d | " + " ".join(
        f"'{a}'" for a in EXTRACT
    ) + f" -C {dst}"  # fmt: skip
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True)


def extract_guest(g: Guest, device: str, dst: Path) -> None:
    """One filesystem of a target, alone, extracted on the host through tar_out."""
    dst.mkdir(parents=True)
    g.umount_all()
    g.mount_ro(device, "/")
    tarball = dst.with_suffix(".tar")
    g.tar_out("/", str(tarball), numericowner=True, xattrs=True, selinux=True, acls=True)
    g.umount_all()
    subprocess.run([*EXTRACT, "-f", str(tarball), "-C", str(dst)], check=True)
    tarball.unlink()


def compare(archive: Path, fs_id: str, g: Guest, device: str, work: Path) -> list[str]:
    """Differences between the archive's stream and the target filesystem (mount points and lost+found aside)."""
    a, b = work / f"{fs_id}-archive", work / f"{fs_id}-target"
    extract_stream(archive, fs_id, a)
    extract_guest(g, device, b)
    want, got = describe(str(a)), describe(str(b))
    for d in (want, got):
        d.pop(b".", None)  # the root directory of a fresh filesystem
    # tar_out reads sparse files densely: ask the target filesystem itself how much they occupy
    g.mount_ro(device, "/")
    for rel, meta in got.items():
        if want.get(rel, {}).get("sparse"):
            st = g.statns(rel[1:].decode())
            meta["sparse"] = st["st_blocks"] * 512 < st["st_size"] // 2
    g.umount_all()
    return diff(want, got)
