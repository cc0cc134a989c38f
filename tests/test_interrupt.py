"""Ctrl-C: exit 130, the appliance shut down, no partial archive, no temp files left.

Each run gets a TMPDIR of its own (conftest's own_tmpdir), where its temp files would be left: /tmp has those of
other tests' runs, coming and going. What a run does on the host is told apart from what other tests do meanwhile by
a marker in its environment, which every process it starts inherits (as in test_faults.py).
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from fixtures.small_image import gpt_lvm_image
from tests.conftest import ROOT, Captured, interruptible, own_tmpdir

pytestmark = pytest.mark.integration
MARK = "IMGCLONE_TEST_RUN"  # every process a run starts inherits it: how the run's processes are found


def _children(pid: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return out.stdout.split()


def test_ctrl_c_during_offline_capture(tmp_path: Path) -> None:
    image = gpt_lvm_image()
    work = tmp_path / "work"
    work.mkdir()
    out = work / "a.mksysb"
    tmp = own_tmpdir(tmp_path / "tmp")
    before = set(glob.glob(f"{tmp['TMPDIR']}/imgclone-*"))
    p = subprocess.Popen([sys.executable, "-m", "imgclone", "capture", str(image), "-o", str(out)], cwd=ROOT,
                         env={**os.environ, **tmp}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=interruptible)  # fmt: skip
    time.sleep(4)  # inside the appliance launch
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=180)
    assert p.returncode == 130, err.decode()
    assert b"interrupted" in err and b"Traceback" not in err
    assert list(work.iterdir()) == [], "a partial archive was left behind"
    assert set(glob.glob(f"{tmp['TMPDIR']}/imgclone-*")) == before, "temp files were left behind"
    assert _children(p.pid) == []


def _ctrl_c(argv: list[str], ready: Callable[[], bool], env: dict[str, str], wait: float = 900) -> tuple[int, str]:
    """Start imgclone in a session of its own, wait until ready(), send SIGINT to the whole group (a terminal's
    Ctrl-C); the exit code and stderr."""
    p = subprocess.Popen([sys.executable, "-m", "imgclone", *argv], cwd=ROOT, env={**os.environ, **env},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                         preexec_fn=interruptible)  # fmt: skip
    deadline = time.monotonic() + wait
    while not ready():
        assert p.poll() is None, f"ended before the interrupt: {p.communicate()[1].decode()}"
        assert time.monotonic() < deadline, f"not ready after {wait:g} s"
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=300)
    assert _children(p.pid) == []
    return p.returncode, err.decode()


def _qemu_on(path: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-af", str(path)], capture_output=True, text=True, check=False).stdout
    return [ln for ln in out.splitlines() if "pgrep" not in ln]


def test_ctrl_c_during_restore(gpt_lvm_capture: Captured, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted once Phase 1 has started writing (its journal exists): exit 130, one line, the appliance gone,
    the image it created removed with its journal, no temp files."""
    _, archive, _, _ = gpt_lvm_capture
    state_dir = tmp_path / "state"
    target = tmp_path / "clone.qcow2"
    tmp = own_tmpdir(tmp_path / "tmp")
    before = set(glob.glob(f"{tmp['TMPDIR']}/imgclone-*"))
    env = {"IMGCLONE_STATE_DIR": str(state_dir), **tmp}
    rc, err = _ctrl_c(["restore", "-a", str(archive), "-d", str(target), "-P1", "--no-progress"],
                      lambda: any(state_dir.glob("*.json")), env)  # fmt: skip
    assert rc == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == ["imgclone: interrupted"], err
    deadline = time.monotonic() + 20
    while _qemu_on(target):
        assert time.monotonic() < deadline, f"left running: {_qemu_on(target)}"
        time.sleep(0.5)
    assert not target.exists(), "the image the interrupted restore created is left"
    assert not list(state_dir.glob("*.json")), "the journal of a removed image is left"
    assert set(glob.glob(f"{tmp['TMPDIR']}/imgclone-*")) == before, "temp files were left behind"


def _run_pids(mark: str) -> list[str]:
    """The processes of the run marked `mark` (imgclone, QEMU, and whatever else it started)."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(pid)
        except OSError:
            continue
    return found


def _open_files(pid: str) -> list[tuple[str, str]]:
    """(fd, what it is open on) of one process; [] once it is gone."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    found = []
    for fd in fds:
        try:
            found.append((fd, os.readlink(f"/proc/{pid}/fd/{fd}")))
        except OSError:
            continue
    return found


def _openers(image: Path, pids: list[str]) -> set[tuple[str, int]]:
    """(command name, access mode) of every open file description of the image in these processes (the run's:
    other tests' processes may open the same image meanwhile)."""
    found = set()
    for pid in pids:
        for fd, target in _open_files(pid):
            if target == str(image):
                try:
                    flags = Path(f"/proc/{pid}/fdinfo/{fd}").read_text().split("flags:")[1].split()[0]
                    found.add((Path(f"/proc/{pid}/comm").read_text().strip(), int(flags, 8) & os.O_ACCMODE))
                except OSError:
                    continue
    return found


def _of_the_image(mount: str, image: Path, pids: list[str]) -> bool:
    """A mount of the image: its path, a loop device backed by it, or an nbd or FUSE (guestmount) mount that a
    process of the run serves (it holds the nbd device or /dev/fuse open). Other engineers' and tests' unrelated
    mounts, FUSE and nbd ones included, may come and go meanwhile."""
    source, _, fstype = mount.split()[:3]
    if str(image) in mount:
        return True
    if source.startswith("/dev/nbd") or fstype.startswith("fuse"):
        device = source if source.startswith("/dev/nbd") else "/dev/fuse"
        return any(target == device for pid in pids for _, target in _open_files(pid))
    backing = Path(f"/sys/block/{source.removeprefix('/dev/')}/loop/backing_file")
    return source.startswith("/dev/loop") and backing.exists() and backing.read_text().strip() == str(image)


def test_offline_capture_never_mounts_the_image_on_the_host(tmp_path: Path) -> None:
    """An untrusted image's filesystems are parsed only by the appliance's kernel: while the capture runs, no
    mount, loop or nbd device of it appears on the host, and every process that opens it opens it read-only."""
    image = gpt_lvm_image()
    out = tmp_path / "a.mksysb"
    mounts = Path("/proc/mounts").read_text().splitlines()
    mark = uuid.uuid4().hex
    p = subprocess.Popen([sys.executable, "-m", "imgclone", "capture", str(image), "-o", str(out), "--no-progress"],
                         cwd=ROOT, env={**os.environ, MARK: mark}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)  # fmt: skip
    seen: set[tuple[str, int]] = set()
    samples = 0
    while p.poll() is None:
        samples += 1
        pids = _run_pids(mark)
        new = [m for m in Path("/proc/mounts").read_text().splitlines() if m not in mounts]
        assert not [m for m in new if _of_the_image(m, image, pids)], f"the image is mounted on the host: {new}"
        assert str(image) not in subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
        seen |= _openers(image, pids)
        time.sleep(0.2)
    _, err = p.communicate()
    assert p.returncode == 0, err.decode()
    assert samples > 20
    assert any(comm.startswith("qemu") for comm, _ in seen), f"QEMU never opened the image: {seen}"
    assert all(mode == os.O_RDONLY for _, mode in seen), f"the image was opened for writing: {seen}"
