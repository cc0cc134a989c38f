"""Everything a stream holds survives imgclone restore into the appliance: owners, modes, times,
hardlinks, sparse files, devices, fifos, xattrs (security.*, trusted.*), ACLs and capabilities."""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from imgclone.guest import Guest
from tests import tricky
from tests.guestcmp import compare
from tests.loopfs import loop_fs

pytestmark = pytest.mark.integration
Run = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.mark.parametrize("fstype", ["ext4", "xfs"])
def test_tricky_tree_survives_restore(
    tmp_path: Path, imgclone: Run, monkeypatch: pytest.MonkeyPatch, fstype: str
) -> None:
    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path / "state"))
    archive = tmp_path / "tricky.mksysb"
    with loop_fs(tmp_path, fstype, 320, name="src") as mnt:
        tricky.populate(mnt)
        r = imgclone("capture", "--mount", str(mnt), "-o", str(archive))
        assert r.returncode == 0, r.stderr.decode()
    manifest = json.loads(tarfile.open(archive).extractfile("manifest.json").read())  # type: ignore[union-attr]
    (stream,) = manifest["streams"]
    source_uuid = manifest["layout"]["filesystems"][0]["uuid"]
    target = tmp_path / "t.qcow2"
    r = imgclone("restore", "-a", str(archive), "-d", str(target), "-P1", "--keep-uuids", "--no-progress")
    assert r.returncode == 0, r.stderr.decode()
    g = Guest()
    g.add_drive(str(target), readonly=True, format="qcow2")
    with g:
        assert g.vfs_type("/dev/sda1") == fstype
        assert g.vfs_uuid("/dev/sda1") == source_uuid, "--keep-uuids did not keep the UUID"
        differences = compare(archive, stream["fs"], g, "/dev/sda1", tmp_path)
    assert differences == []
