"""The Guest interface on this host, without an appliance: AIX's way (alt_disk_copy mounts the clone at /alt_inst).

A HostGuest is given the targets: block devices as they are, raw images attached as loop devices (with the
kernel's partition scan). The clone is mounted at /alt_inst, the AIX mount point; while another run holds it (a
lock on the directory) or something is there (`alt wake`'s clone), at /alt_inst.<first target's name>. Its calls
are host_tree.py's (the tree) and host_disks.py's (below it).

Nothing it leaves outlives the run, even a killed one: the command runs in a mount namespace of its own (cli/main.py
re-executes it under `unshare --mount`), so its mounts go with its last process; the loop devices it attaches
are set to clear themselves (LO_FLAGS_AUTOCLEAR) and held open by this process until it lets them go.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import struct
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from imgclone.errors import GuestfsError
from imgclone.guest.host_disks import HostDisks, run_tool
from imgclone.guest.host_tree import HostTree
from imgclone.guest.interface import Guest
from imgclone.host.run import HOST, Runner

log = logging.getLogger("imgclone")

ALT_INST = "/alt_inst"
LOOP_GET_STATUS64, LOOP_SET_STATUS64 = 0x4C05, 0x4C04  # <linux/loop.h>
LO_FLAGS_AUTOCLEAR = 4
LO_FLAGS_OFFSET = 52  # struct loop_info64: five __u64, then lo_number, lo_encrypt_type, lo_encrypt_key_size, lo_flags
LOOP_INFO64_SIZE = 232


def set_autoclear(fd: int) -> None:
    """The loop device open at fd detaches itself when its last user (a mount, an open file) lets it go."""
    info = bytearray(LOOP_INFO64_SIZE)
    fcntl.ioctl(fd, LOOP_GET_STATUS64, info)
    (flags,) = struct.unpack_from("=I", info, LO_FLAGS_OFFSET)
    struct.pack_into("=I", info, LO_FLAGS_OFFSET, flags | LO_FLAGS_AUTOCLEAR)
    fcntl.ioctl(fd, LOOP_SET_STATUS64, bytes(info))


def claim_root(names: Sequence[str], base: str = ALT_INST) -> tuple[str, int]:
    """The clone's mount point and the lock that holds it: /alt_inst, or /alt_inst.<name> while /alt_inst is held
    by another run or holds something (a clone `alt wake` mounted there, files of somebody's)."""
    why = []
    for root in (base, f"{base}.{os.path.basename(names[0]) if names else 'clone'}"):
        os.makedirs(root, exist_ok=True)
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            why.append(f"{root} is in use by another imgclone run")
            continue
        if os.listdir(root):
            os.close(fd)
            why.append(f"{root} is not empty")
            continue
        return root, fd
    raise GuestfsError("; ".join(why), "unmount or empty them (`imgclone alt sleep` for a woken clone)")


class HostGuest(HostTree, HostDisks):
    """The targets on this host: the Guest interface (guest/interface.py) with the host's kernel and tools."""

    def __init__(self, drives: Sequence[tuple[str, str]], runner: Runner = HOST, base: str = ALT_INST,
                 sys_block: Path = Path("/sys/block")) -> None:  # fmt: skip
        self._drives = list(drives)
        self._loops: dict[str, int] = {}  # a loop device this guest attached → its open fd
        self._base = base
        root, self._lock = claim_root([path for path, _ in drives], base)
        HostTree.__init__(self, runner, root)
        HostDisks.__init__(self, runner, [], sys_block)

    def launch(self) -> None:
        """Each drive as a block device: itself, or a raw image's loop device."""
        for path, fmt in self._drives:
            if stat.S_ISBLK(os.stat(path).st_mode):
                device = path
            elif fmt == "raw":
                device = run_tool(self.runner, ["losetup", "--find", "--show", "--partscan", path]).text.strip()
                fd = os.open(device, os.O_RDONLY)
                self._loops[device] = fd
                set_autoclear(fd)
            else:
                raise GuestfsError(f"{path}: a {fmt} image cannot be attached on the host (raw images and block "
                                   "devices can); --via appliance attaches it")  # fmt: skip
            self._devices.append(device)
            self.make_nodes(device)

    def appliance_command(self, argv: list[str]) -> str:
        """A program of this host; lvm held to the drives (--devices) as every LVM call here is."""
        if argv[:1] == ["lvm"] and len(argv) > 1:
            return self._lvm(argv[1], *argv[2:])
        return HostTree.appliance_command(self, argv)

    def _chroot_devices(self) -> list[str]:
        return [*self._devices, *(d for d in self.list_filesystems() if d not in self._devices)]

    def _chroot_links(self) -> dict[str, str]:
        links = {}
        for device in self._chroot_devices():
            ids = self._blkid_quiet(device)
            for key, folder in (("UUID", "by-uuid"), ("PART_ENTRY_UUID", "by-partuuid")):
                if ids.get(key):
                    links[f"/dev/disk/{folder}/{ids[key]}"] = device
        return links

    def _blkid_quiet(self, device: str) -> dict[str, str]:
        try:
            return self.blkid(device)
        except GuestfsError:
            return {}  # nothing on it

    def close(self) -> None:
        """Unmount the clone, let the loop devices go, remove the partition nodes made and the mount point."""
        try:
            self.umount_all()
        except GuestfsError as e:
            log.warning("unmounting %s: %s", self.root, e)
        for device, fd in self._loops.items():
            os.close(fd)
            run_tool(self.runner, ["losetup", "--detach", device], check=False)  # autoclear may have done it
        self._loops.clear()
        for node in self.made_nodes:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(node)
        self.made_nodes.clear()
        if self._lock >= 0:
            if self.root != self._base:  # /alt_inst.<name> is this run's own
                with contextlib.suppress(OSError):
                    os.rmdir(self.root)
            os.close(self._lock)
            self._lock = -1

    def __enter__(self) -> HostGuest:
        self.launch()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()


def _is_a_guest(guest: HostGuest) -> Guest:
    """Never called: mypy checks here that HostGuest has every call of the Guest interface, typed alike."""
    return guest
