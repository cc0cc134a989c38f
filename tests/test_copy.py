"""imgclone copy (alt_disk_copy): capture and restore in one command, phases by -P, temporary archive removed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from imgclone.guest.appliance import Appliance
from imgclone.model.journal import state_path
from tests.conftest import own_tmpdir
from tests.treecmp import file_sha256

pytestmark = pytest.mark.integration
Run = Callable[..., subprocess.CompletedProcess[bytes]]
MANIFEST = b"manifest.json"
HOST_SCRIPT = '#!/bin/sh\nset -e\necho "from -s: $ALT_INST" > "$ALT_INST/etc/copied-in"\n'


def _read_clone(image: Path, device: str, path: str) -> bytes:
    g = Appliance()
    g.add_drive(str(image), readonly=True, format="qcow2")
    with g:
        g.vg_activate_all(True)
        g.mount_ro(device, "/")
        return bytes(g.read_file(path))


@contextmanager
def _watch(directory: Path, seen: set[str]) -> Iterator[None]:
    """Every archive (a file that begins with the manifest's tar header) that appears under directory while the
    block runs, sampled twice a second."""
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.5):
            for dirpath, _, files in os.walk(directory):
                for name in files:
                    path = os.path.join(dirpath, name)
                    try:
                        with open(path, "rb") as f:
                            if f.read(len(MANIFEST)) == MANIFEST:
                                seen.add(path)
                    except OSError:
                        pass  # gone already

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def test_alt_disk_copy_of_an_image_phases_1_and_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fixtures.small_image import gpt_lvm_image

    source = gpt_lvm_image()
    before = file_sha256(source)
    script = tmp_path / "host.sh"
    script.write_text(HOST_SCRIPT)
    script.chmod(0o755)
    # TMPDIR of its own (libguestfs's temp files too); libguestfs's appliance cache stays where it was
    env = dict(os.environ, IMGCLONE_STATE_DIR=str(tmp_path / "state"), **own_tmpdir(tmp_path / "tmp"))
    clone = tmp_path / "clone.qcow2"
    alias = Path(sys.executable).parent / "alt_disk_copy"
    seen: set[str] = set()
    with _watch(tmp_path / "tmp", seen):
        r = subprocess.run([str(alias), "--source", str(source), "-d", str(clone), "-P12", "-s", str(script),
                            "--alt-inst", str(tmp_path / "alt_inst"), "--no-progress", "--json", "--by", "files"],
                           capture_output=True, env=env, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    assert seen == set(), "the archive streams from capture to restore: no temporary archive is ever written"
    out = json.loads(r.stdout)
    assert out["by"] == "files"  # the stream (copy by blocks: test_e2e_more.py)
    assert "phase1" in out and "phase3" not in out
    assert out["phase2"]["actions"] == [f"ran {script} with the clone at {tmp_path / 'alt_inst'}"]
    left = [n for n in os.listdir(tmp_path / "tmp") if not n.startswith(".guestfs-")]  # libguestfs's cache
    assert left == [], "nothing is left in TMPDIR"
    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path / "state"))
    journal = json.loads(state_path([str(clone)]).read_text())
    assert sorted(journal["phases"]) == ["1", "2"]
    text = _read_clone(clone, "/dev/altinst_rootvg/alt_root", "/etc/copied-in")
    assert text == f"from -s: {tmp_path / 'alt_inst'}\n".encode()
    assert file_sha256(source) == before


def test_copy_keeps_the_archive_when_asked(tmp_path: Path, imgclone: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from fixtures.small_image import gpt_lvm_image

    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path / "state"))
    kept = tmp_path / "kept.mksysb"
    r = imgclone("copy", "--source", str(gpt_lvm_image()), "--archive", str(kept), "-d", str(tmp_path / "c.img"),
                 "-P1", "--no-progress", "-V")  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    assert "Phase 1: captured 4 filesystem(s)" in r.stdout.decode()
    listed = r.stderr.decode().splitlines()  # -V: each file as restore receives it, once, at its mount point
    assert {"/etc/fstab", "/boot/grub/grub.cfg", "/boot/efi/EFI/debian/shimx64.efi", "/var/log/app.log"} <= set(listed)
    assert "/var/tmp/junk.txt" not in listed, "excluded by the image's /etc/exclude.rootvg"
    assert listed.count("/etc/fstab") == 1, "listed once (not by the capture as well)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.img", "kept.mksysb", "state"]
    r = imgclone("archive", "verify", str(kept))
    assert r.returncode == 0 and "verified, all streams intact" in r.stdout.decode()
    # the clone holds every file of the archive (one read-only appliance; fstab rewritten by restore, by rule)
    r = imgclone("archive", "verify", str(kept), "--against", str(tmp_path / "c.img"), "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["ok"], (report["summary"], report["notes"], r.stderr.decode()[-2000:])
    assert [f["mountpoint"] for f in report["filesystems"]] == ["/", "/boot", "/boot/efi", "/var"]
    changed = {d["path"]: d["rule"] for f in report["filesystems"] for d in f["differences"] if d["rule"]}
    assert changed.get("/etc/fstab") == "restore rewrites it (new UUIDs, types)", changed


def test_copy_of_the_running_system_dry_run(tmp_path: Path, imgclone: Run) -> None:
    r = imgclone("copy", "-d", str(tmp_path / "c.img"), "--dry-run")
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert "nothing was written (--dry-run)" in out
    assert list(tmp_path.iterdir()) == []
    # FILES: the inodes / uses (the machine is shared: its count moves a little while the test runs)
    row = next(line for line in out.splitlines() if line.startswith("fs-root "))
    st = os.statvfs("/")
    assert abs(int(row.split()[-1]) - (st.f_files - st.f_ffree)) < 5000, row
    # converting: the dry run looks for this host's files near the new type's limits, as the copy would
    r = imgclone("copy", "-d", str(tmp_path / "c.img"), "--dry-run", "--convert", "ext4=xfs")
    assert r.returncode == 0, r.stderr.decode()
    assert b"were not checked" not in r.stderr, r.stderr.decode()
    assert list(tmp_path.iterdir()) == []


def test_copy_refuses_a_conversion_its_content_cannot_survive(tmp_path: Path, imgclone: Run,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A 5 TiB sparse file on the xfs /var: ext4 made at that size (1 KiB blocks) holds 4 TiB. copy names the file
    and writes nothing, although its plan comes before any stream: the capture found the file first (prescan.py)."""
    from fixtures.small_image import gpt_lvm_image

    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path / "state"))
    source = tmp_path / "source.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(gpt_lvm_image()),
                    str(source)], check=True)  # fmt: skip
    g = Appliance()
    g.add_drive(str(source), readonly=False, format="qcow2")
    with g:
        g.vg_activate_all(True)
        g.mount("/dev/rootvg/var", "/")
        g.touch("/big")
        g.truncate_size("/big", 5 << 40)
    target = tmp_path / "c.qcow2"
    for dry in (["--dry-run"], []):  # the dry run probes without capturing: it looks for the file too
        r = imgclone("copy", "--source", str(source), "-d", str(target), "--convert", "xfs=ext4", "--no-progress",
                     *dry)  # fmt: skip
        err = r.stderr.decode()
        assert r.returncode == 2, err
        assert "file /var/big is 5.0 TiB; ext4 (1 KiB blocks) holds files up to 4.0 TiB" in err, err
        assert "Traceback" not in err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["source.qcow2"], "no target image, no journal"
