"""Ctrl-C: exit 130, the appliance shut down, no partial archive, no temp files left."""

from __future__ import annotations

import glob
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures.small_image import gpt_lvm_image
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def _children(pid: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return out.stdout.split()


def test_ctrl_c_during_offline_capture(tmp_path: Path) -> None:
    image = gpt_lvm_image()
    out = tmp_path / "a.mksysb"
    before = set(glob.glob("/tmp/imgclone-*"))
    p = subprocess.Popen([sys.executable, "-m", "imgclone", "capture", str(image), "-o", str(out)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    time.sleep(4)  # inside the appliance launch
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=180)
    assert p.returncode == 130, err.decode()
    assert b"interrupted" in err and b"Traceback" not in err
    assert list(tmp_path.iterdir()) == [], "a partial archive was left behind"
    assert set(glob.glob("/tmp/imgclone-*")) == before, "temp files were left behind"
    assert _children(p.pid) == []
