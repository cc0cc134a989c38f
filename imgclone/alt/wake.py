"""alt wake and alt sleep: an alternate's filesystems mounted read-write on this host, and unmounted again.

AIX wakes an altinst_rootvg by varying it on and mounting its filesystems under /alt_inst; here the volume groups
live only inside the libguestfs appliance (the host may have no device-mapper), so wake runs `guestmount`, a FUSE
daemon that keeps one appliance up with every filesystem mounted and outlives this process, and sleep unmounts it
with `guestunmount` and waits for the daemon to flush the images and exit.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from imgclone.alt import alternates
from imgclone.alt.alternates import (
    Alternate,
    all_alternates,
    find,
    guestmount_alive,
    now,
    refuse_missing,
    refuse_woken,
)
from imgclone.errors import ImgcloneError, PhaseStateError, UsageError
from imgclone.host import accel
from imgclone.host.run import HOST, Runner
from imgclone.model import journal as state
from imgclone.model.trees import mounted
from imgclone.storage import build

DEFAULT_MOUNTPOINT = "/alt_inst"
SLEEP_TIMEOUT = 300.0  # the daemon syncs and shuts its appliance down after the unmount (slow under TCG)


def drive_name(index: int) -> str:
    """The appliance's name of the index-th drive added: /dev/sda, …, /dev/sdz, /dev/sdaa."""
    letters = ""
    n = index + 1
    while n:
        n, r = divmod(n - 1, 26)
        letters = chr(ord("a") + r) + letters
    return f"/dev/sd{letters}"


def guestmount_argv(alt: Alternate, mountpoint: str, pid_file: str) -> list[str]:
    """guestmount with every target (in the order Phase 1 added them) and one -m per filesystem, parents first (a
    btrfs's subvolumes each at its own, with its subvol= option)."""
    argv = ["guestmount", "--rw"]
    for t in alt.targets:
        argv += [f"--format={t.format}", "-a", t.path]
    devs = build.Devices(alt.layout, {d.id: drive_name(i) for i, d in enumerate(alt.layout.disks)})
    for tree in mounted(alt.layout):
        options = f":{tree.mount_options}" if tree.mount_options else ""
        argv += ["-m", f"{devs.path(tree.fs.device)}:{tree.mountpoint}{options}"]
    return argv + ["--pid-file", pid_file, mountpoint]


def check_mountpoint(path: str) -> bool:
    """Refuse a mount point that is mounted on, not a directory or not empty; True when it must be made."""
    if alternates.mounted(path):
        raise UsageError(f"--mountpoint {path}: is a mount point already", "give an empty directory that is not one")
    if not os.path.lexists(path):
        return True
    if not os.path.isdir(path):
        raise UsageError(f"--mountpoint {path}: not a directory")
    if os.listdir(path):
        raise UsageError(f"--mountpoint {path}: directory is not empty", "give an empty or new directory")
    return False


def wake(targets: Sequence[str], mountpoint: str = DEFAULT_MOUNTPOINT, runner: Runner = HOST) -> state.Woken:
    """Mount the alternate's filesystems read-write at mountpoint through guestmount; record it in the journal."""
    alt = find(targets)
    refuse_woken(alt, "wake")
    refuse_missing(alt, "wake")
    mountpoint = os.path.abspath(mountpoint)
    make = check_mountpoint(mountpoint)
    env = {"LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"} if accel.choose(runner) == "tcg" else None
    if make:
        os.makedirs(mountpoint)
    try:
        with tempfile.TemporaryDirectory(prefix="imgclone-wake-") as tmp:
            pid_file = os.path.join(tmp, "guestmount.pid")
            runner.run(guestmount_argv(alt, mountpoint, pid_file), env=env)
            pid = int(Path(pid_file).read_text().strip())
    except BaseException:
        if make and not alternates.mounted(mountpoint):
            os.rmdir(mountpoint)
        raise
    woken = state.Woken(mountpoint, pid, now(), make)
    state.set_woken(alt.target_paths, woken)
    return woken


def _woken_one(targets: Sequence[str] | None) -> Alternate:
    if targets:
        return find(targets)
    woken = [a for a in all_alternates() if a.woken is not None]
    if len(woken) != 1:
        listed = "; ".join(f"-d {a.dflag} at {a.woken.mountpoint}" for a in woken if a.woken)
        raise UsageError("sleep: give -d TARGETS" + (f": {len(woken)} alternates are woken ({listed})" if woken
                                                     else ": no alternate is woken"))  # fmt: skip
    return woken[0]


def sleep(targets: Sequence[str] | None, runner: Runner = HOST, timeout: float = SLEEP_TIMEOUT) -> str:
    """Unmount a woken alternate, wait until its guestmount has flushed and exited, clear the record."""
    alt = _woken_one(targets)
    w = alt.woken
    if w is None:
        raise PhaseStateError(f"sleep: the alternate on -d {alt.dflag} is not woken",
                              f"imgclone alt wake -d {alt.dflag} mounts it")  # fmt: skip
    was_mounted, was_alive = alternates.mounted(w.mountpoint), guestmount_alive(w.pid)
    if was_mounted:
        res = runner.run(["guestunmount", w.mountpoint], check=False)
        if res.returncode != 0:
            first = next((ln for ln in res.stderr.splitlines() if ln.strip()), f"exit code {res.returncode}")
            hint = f"close shells and files under it (fuser -vm {w.mountpoint}), then sleep again"
            raise ImgcloneError(f"sleep: guestunmount {w.mountpoint}: {first.strip()}", hint)
    deadline = time.monotonic() + timeout
    while guestmount_alive(w.pid):
        if time.monotonic() > deadline:
            raise ImgcloneError(f"sleep: guestmount (pid {w.pid}) still runs {timeout:g} s after the unmount",
                                "it is still writing the images; run alt sleep again later")  # fmt: skip
        time.sleep(0.2)
    if w.made_mountpoint and os.path.isdir(w.mountpoint) and not os.listdir(w.mountpoint):
        os.rmdir(w.mountpoint)
    state.clear_woken(alt.target_paths)
    if not was_mounted:
        return f"{w.mountpoint} was no longer mounted; wake record of -d {alt.dflag} cleared"
    if not was_alive:
        return (f"unmounted {w.mountpoint}, whose guestmount (pid {w.pid}) had died: what it had not written to the "
                f"images is lost; the alternate on -d {alt.dflag} sleeps")  # fmt: skip
    return f"unmounted {w.mountpoint}; the alternate on -d {alt.dflag} sleeps (images flushed)"
