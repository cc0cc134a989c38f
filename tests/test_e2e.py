"""The promise: a clone made by imgclone boots. BIOS fixture → capture → restore (XFS) → Phase 3 → boot."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from fixtures.build import fixture_path
from tests.treecmp import file_sha256

pytestmark = pytest.mark.integration
Run = Callable[..., subprocess.CompletedProcess[bytes]]


def test_bios_clone_converted_to_xfs_boots(tmp_path: Path, imgclone: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path / "state"))
    source = fixture_path("bios")
    before = file_sha256(source)
    archive, clone = tmp_path / "bios.mksysb", tmp_path / "clone.qcow2"

    r = imgclone("capture", str(source), "-o", str(archive), "--no-progress")
    assert r.returncode == 0, r.stderr.decode()
    r = imgclone("restore", "-a", str(archive), "-d", str(clone), "--size", "4G", "--resize", "fit",
                 "--convert", "ext4=xfs", "--no-progress", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    actions = json.loads(r.stdout)["phase3"]["actions"]
    assert "renamed volume group altinst_rootvg → rootvg" in actions
    assert "installed GRUB for BIOS (i386-pc) on the first target" in actions

    r = imgclone("boot-test", str(clone), "--timeout", "600", "--json")
    result = json.loads(r.stdout)
    assert r.returncode == 0 and result["ok"], r.stderr.decode()
    assert file_sha256(source) == before, "the source fixture was modified"
