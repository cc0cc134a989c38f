"""Ctrl-C: exit 130, the appliance shut down, no partial archive, no temp files left."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fixtures.small_image import gpt_lvm_image
from tests.conftest import ROOT, Captured, interruptible

pytestmark = pytest.mark.integration


def _children(pid: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return out.stdout.split()


def test_ctrl_c_during_offline_capture(tmp_path: Path) -> None:
    image = gpt_lvm_image()
    out = tmp_path / "a.mksysb"
    before = set(glob.glob("/tmp/imgclone-*"))
    p = subprocess.Popen([sys.executable, "-m", "imgclone", "capture", str(image), "-o", str(out)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=interruptible)  # fmt: skip
    time.sleep(4)  # inside the appliance launch
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=180)
    assert p.returncode == 130, err.decode()
    assert b"interrupted" in err and b"Traceback" not in err
    assert list(tmp_path.iterdir()) == [], "a partial archive was left behind"
    assert set(glob.glob("/tmp/imgclone-*")) == before, "temp files were left behind"
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
    before = set(glob.glob("/tmp/imgclone-*"))
    env = {"IMGCLONE_STATE_DIR": str(state_dir)}
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
    assert set(glob.glob("/tmp/imgclone-*")) == before, "temp files were left behind"


def _openers(image: Path) -> set[tuple[str, int]]:
    """(command name, access mode) of every open file description of the image, in any process."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(image):
                    flags = Path(f"/proc/{pid}/fdinfo/{fd}").read_text().split("flags:")[1].split()[0]
                    found.add((Path(f"/proc/{pid}/comm").read_text().strip(), int(flags, 8) & os.O_ACCMODE))
        except OSError:
            continue
    return found


def _of_the_image(mount: str, image: Path) -> bool:
    """A mount of the image: its path, an nbd or FUSE (guestmount) mount, or a loop device backed by it (other
    engineers' and tests' unrelated mounts may come and go meanwhile)."""
    source, _, fstype = mount.split()[:3]
    if str(image) in mount or source.startswith("/dev/nbd") or fstype.startswith("fuse"):
        return True
    backing = Path(f"/sys/block/{source.removeprefix('/dev/')}/loop/backing_file")
    return source.startswith("/dev/loop") and backing.exists() and backing.read_text().strip() == str(image)


def test_offline_capture_never_mounts_the_image_on_the_host(tmp_path: Path) -> None:
    """An untrusted image's filesystems are parsed only by the appliance's kernel: while the capture runs, no
    mount, loop or nbd device of it appears on the host, and every process that opens it opens it read-only."""
    image = gpt_lvm_image()
    out = tmp_path / "a.mksysb"
    mounts = Path("/proc/mounts").read_text().splitlines()
    p = subprocess.Popen([sys.executable, "-m", "imgclone", "capture", str(image), "-o", str(out), "--no-progress"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    seen: set[tuple[str, int]] = set()
    samples = 0
    while p.poll() is None:
        samples += 1
        new = [m for m in Path("/proc/mounts").read_text().splitlines() if m not in mounts]
        assert not [m for m in new if _of_the_image(m, image)], f"the image is mounted on the host: {new}"
        assert str(image) not in subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
        seen |= _openers(image)
        time.sleep(0.2)
    _, err = p.communicate()
    assert p.returncode == 0, err.decode()
    assert samples > 20
    assert any(comm.startswith("qemu") for comm, _ in seen), f"QEMU never opened the image: {seen}"
    assert all(mode == os.O_RDONLY for _, mode in seen), f"the image was opened for writing: {seen}"
