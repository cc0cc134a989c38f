"""One run per target: the lock is held while a run works, refused to a second run by name, dropped at exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imgclone.errors import ImgcloneError
from imgclone.host import locks

HOLD = """
import sys, time
from imgclone.host import locks
with locks.hold(sys.argv[1:]):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMGCLONE_LOCK_DIR", str(tmp_path / "locks"))
    return tmp_path / "locks"


def test_a_second_run_on_a_target_is_refused_and_named(tmp_path: Path) -> None:
    a, b = str(tmp_path / "a.qcow2"), str(tmp_path / "b.qcow2")
    p = subprocess.Popen([sys.executable, "-c", HOLD, a], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline() == "held\n"
        with pytest.raises(ImgcloneError, match=rf"-d {a}: another imgclone run is working on it \(pid {p.pid}: "):
            with locks.hold([b, a]):
                pass
        with locks.hold([b]):  # another target: free
            pass
    finally:
        p.kill()
        p.wait()
    with locks.hold([a, b]):  # the kernel dropped the killed run's lock
        pass


def test_the_same_target_by_another_name_is_the_same_lock(tmp_path: Path) -> None:
    target = tmp_path / "disk.img"
    target.touch()
    (tmp_path / "link.img").symlink_to(target)
    with locks.hold([str(target)]):
        with pytest.raises(ImgcloneError, match="another imgclone run"):
            with locks.hold([str(tmp_path / "link.img")]):
                pass


def test_nothing_is_locked_after_the_block(lock_dir: Path, tmp_path: Path) -> None:
    with locks.hold([str(tmp_path / "x")]):
        assert len(list(lock_dir.iterdir())) == 1
    with locks.hold([str(tmp_path / "x")]):
        pass
