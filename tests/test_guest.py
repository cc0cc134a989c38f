"""guest.py's launch watchdog, with a fake handle and a fake /proc: a stuck launch is stopped, others are left alone."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from imgclone.errors import GuestfsError
from imgclone.guest import appliance as guest
from imgclone.host import accel


def write_stat(proc: Path, pid: int, comm: str, ppid: int) -> None:
    (proc / str(pid)).mkdir()
    (proc / str(pid) / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 0 0\n")


def test_qemu_children_are_this_process_qemus(tmp_path: Path) -> None:
    me = os.getpid()
    write_stat(tmp_path, 101, "qemu-system-x86", me)
    write_stat(tmp_path, 102, "qemu-system-x86", 1)  # someone else's appliance
    write_stat(tmp_path, 103, "python3", me)  # libguestfs's recovery process
    write_stat(tmp_path, 104, "qemu-system-x86) S 77 (odd", me)  # a comm with parentheses and spaces
    (tmp_path / "self").mkdir()
    assert guest.qemu_children(str(tmp_path)) == {101, 104}


class Children:
    """What a fake /proc shows: `before` at first, then `after` once the launch has started QEMU."""

    def __init__(self, before: set[int], after: set[int]) -> None:
        self.calls = 0
        self.sets = (before, after)

    def __call__(self) -> set[int]:
        self.calls += 1
        return self.sets[0] if self.calls == 1 else self.sets[1]


def test_watchdog_kills_only_the_new_stuck_qemu() -> None:
    killed: list[int] = []
    stopped = threading.Event()

    def kill(pid: int) -> None:
        killed.append(pid)
        stopped.set()

    with guest._running_lock:
        guest._running.add(7)  # a launched appliance of this process, started meanwhile
    try:
        with guest.LaunchWatchdog(0.05, Children({5}, {5, 7, 9}), kill) as dog:
            assert stopped.wait(5)
    finally:
        with guest._running_lock:
            guest._running.discard(7)
    assert killed == [9] and dog.fired


def test_watchdog_leaves_a_launch_that_returned() -> None:
    killed: list[int] = []
    with guest.LaunchWatchdog(0.2, Children(set(), {9}), killed.append) as dog:
        pass
    assert killed == [] and not dog.fired


class StuckHandle:
    """A GuestFS whose launch hangs until its QEMU (pid 4242) is killed, as a hung hypervisor does."""

    killed = threading.Event()

    def __init__(self, **_: Any) -> None:
        self.settings: list[str] = []

    def set_backend_settings(self, s: list[str]) -> None:
        self.settings = s

    def set_smp(self, n: int) -> None:
        pass

    def add_drive_opts(self, path: str, **opts: Any) -> None:
        pass

    def launch(self) -> None:
        if not StuckHandle.killed.wait(10):
            raise AssertionError("the watchdog never killed the appliance")
        raise RuntimeError("guestfs_launch failed: appliance closed the connection")

    def close(self) -> None:
        pass


def test_stuck_tcg_launch_fails_in_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    StuckHandle.killed.clear()
    seen = iter([set(), {4242}])
    monkeypatch.setattr(guest, "qemu_children", lambda: next(seen, {4242}))
    monkeypatch.setattr(guest, "kill_now", lambda pid: StuckHandle.killed.set() if pid == 4242 else None)
    monkeypatch.setattr(accel, "choose", lambda: "tcg")
    monkeypatch.setenv(guest.TIMEOUT_ENV, "0.1")
    g = guest.Appliance()
    g._gfs = type("FakeGuestfs", (), {"GuestFS": StuckHandle})
    with pytest.raises(
        GuestfsError, match=r"did not start: no answer within 0 s; IMGCLONE_LAUNCH_TIMEOUT sets the limit \(run"
    ):
        g.launch()


@pytest.mark.parametrize(("value", "accel_name", "seconds"), [("", "kvm", 180.0), ("", "tcg", 900.0),
                                                              ("30", "tcg", 30.0), ("soon", "kvm", 180.0)])  # fmt: skip
def test_launch_timeout(value: str, accel_name: str, seconds: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(guest.TIMEOUT_ENV, value)
    assert guest.launch_timeout(accel_name) == seconds


class ShHandle:
    """A libguestfs handle with labelled drives that records `debug sh`."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.calls: list[tuple[str, list[str]]] = []

    def list_disk_labels(self) -> dict[str, str]:
        return self.labels

    def debug(self, sub: str, args: list[str]) -> str:
        self.calls.append((sub, args))
        return "out"


def test_appliance_command_waits_for_udev_first() -> None:
    """`debug sh` does not wait for udev as libguestfs's own calls do: the command runs after `udevadm settle`,
    with its own exit status."""
    g = guest.Appliance()
    g._g = handle = ShHandle({})
    assert g.appliance_command(["lvm", "lvcreate", "-n", "my lv", "altinst_a"]) == "out"
    assert handle.calls == [("sh", [f"{guest.SETTLE}; lvm lvcreate -n 'my lv' altinst_a"])]


def test_appliance_command_names_devices_by_their_labels() -> None:
    """The API's /dev/sda1 need not be the appliance kernel's (its own disk may come first: the first drive is then
    its /dev/sdb): each argument that is an API device is given as the drive's /dev/disk/guestfs path; LVs stay."""
    g = guest.Appliance()
    g._g = handle = ShHandle({"targeta": "/dev/sda", "targeta1": "/dev/sda1", "targetb2": "/dev/sdb2"})
    g.appliance_command(["mkfs.xfs", "-f", "-L", "/dev/sda1", "/dev/sda1"])
    g.appliance_command(["lvm", "vgcreate", "altinst_a", "/dev/sda", "/dev/sdb2", "/dev/altinst_a/alt_root"])
    assert [args[0].split("; ", 1)[1] for _, args in handle.calls] == [
        "mkfs.xfs -f -L /dev/disk/guestfs/targeta1 /dev/disk/guestfs/targeta1",
        "lvm vgcreate altinst_a /dev/disk/guestfs/targeta /dev/disk/guestfs/targetb2 /dev/altinst_a/alt_root",
    ]


def test_appliance_command_refuses_a_device_without_a_label() -> None:
    g = guest.Appliance()
    g._g = handle = ShHandle({"targeta": "/dev/sda", "targeta1": "/dev/sda1"})
    with pytest.raises(GuestfsError, match=r"mkfs.xfs: /dev/sdb1 is on a drive without a label"):
        g.appliance_command(["mkfs.xfs", "/dev/sdb1"])
    assert handle.calls == [], "nothing ran"
