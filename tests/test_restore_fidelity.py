"""Everything a stream holds survives imgclone restore into the appliance: owners, modes, times,
hardlinks, sparse files, devices, fifos, xattrs (security.*, trusted.*), ACLs and capabilities, as
`imgclone archive verify --against` finds it, file by file."""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import tricky
from tests.loopfs import loop_fs

pytestmark = pytest.mark.integration
Run = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.mark.parametrize(("fstype", "flags", "restored"), [("ext4", [], "ext4"), ("xfs", [], "xfs"),
                                                       ("ext3", ["-T"], "ext4")])  # fmt: skip
def test_tricky_tree_survives_restore(
    tmp_path: Path, imgclone: Run, monkeypatch: pytest.MonkeyPatch, fstype: str, flags: list[str], restored: str
) -> None:
    """-T: ext3 becomes ext4 on the way (as JFS to JFS2), with every file as it was (test_e2e_more.py boots such a
    clone)."""
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
    r = imgclone("restore", "-a", str(archive), "-d", str(target), "-P1", "--keep-uuids", "--no-progress", *flags)
    assert r.returncode == 0, r.stderr.decode()
    # one read-only appliance: every file of the stream against the restored filesystem (imgclone/fidelity.py)
    r = imgclone("archive", "verify", str(archive), "--against", str(target), "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["ok"], r.stdout.decode()[-4000:] + r.stderr.decode()
    (fs,) = report["filesystems"]
    assert (fs["fs"], fs["type"], fs["uuid"]) == (stream["fs"], restored, source_uuid), "--keep-uuids kept the UUID"
    assert fs["compared"] == fs["equal"] == stream["files"], fs
    assert report["mapping"] == "the journal"
    # a filesystem with no /etc/fstab: restore changes nothing in it, not even by rule
    assert report["summary"]["by_rule"] == 0, fs["differences"]
