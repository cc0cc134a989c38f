"""Restore the captured GPT + LVM image onto new images and a loop device, and compare every file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imgclone.archive.reader import read_manifest_doc
from imgclone.fs.features import ext_features
from imgclone.guest.appliance import Appliance
from imgclone.probe.guest_parsers import xfs_features
from tests.conftest import Captured
from tests.guestcmp import compare
from tests.treecmp import describe, diff

pytestmark = pytest.mark.integration
Run = Callable[..., subprocess.CompletedProcess[bytes]]
GiB = 1 << 30
EXT = ("ext2", "ext3", "ext4")


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def restore(imgclone: Run, archive: Path, *args: str) -> dict[str, object]:
    r = imgclone("restore", "-a", str(archive), "-P1", *args, "--json")
    assert r.returncode == 0, r.stderr.decode()
    return dict(json.loads(r.stdout))


def check_clone(archive: Path, drives: list[tuple[str, str]], work: Path) -> dict[str, object]:
    """Open the targets read-only; compare every filesystem with the archive; return facts."""
    g = Appliance()
    for path, fmt in drives:
        g.add_drive(path, readonly=True, format=fmt)
    with g:
        lvs = sorted(g.lvs())
        facts: dict[str, object] = {"lvs": lvs, "pvs": sorted(g.pvs()), "types": {}}
        devs = {"fs-root": "/dev/altinst_rootvg/alt_root", "fs-var": "/dev/altinst_rootvg/alt_var",
                "fs-boot": "/dev/sda2", "fs-boot-efi": "/dev/sda1"}  # fmt: skip
        problems = []
        for fs_id, dev in devs.items():
            facts["types"][fs_id] = g.vfs_type(dev)  # type: ignore[index]
            # /etc/fstab is rewritten to the new UUIDs and types on purpose: checked below
            diffs = [d for d in compare(archive, fs_id, g, dev, work) if not d.startswith("b'./etc/fstab' ")]
            problems += [f"{fs_id}: {d}" for d in diffs]
        g.mount_ro(devs["fs-root"], "/")
        facts["fstab"] = g.read_file("/etc/fstab").decode()
        # what mkfs made, as capture reads it (fsfeatures: the source's features, the target type's equivalents)
        types = {fs_id: g.vfs_type(dev) for fs_id, dev in devs.items()}
        made = {fs_id: ext_features(g.tune2fs_l(dev)) for fs_id, dev in devs.items() if types[fs_id] in EXT}
        if types["fs-var"] == "xfs":
            g.mount_ro(devs["fs-var"], "/var")
            made["fs-var"] = xfs_features(g.xfs_info("/var"), bytes(g.pread_device(devs["fs-var"], 512, 0)))
        facts["features"] = made
        facts["uuids"] = {fs_id: g.vfs_uuid(dev) for fs_id, dev in devs.items()}
        facts["parttype"] = g.part_get_parttype("/dev/sda")
        facts["extents"] = {vg["vg_name"]: vg["vg_extent_size"] for vg in g.vgs_full()}
    assert problems == []
    return facts


def test_grow_onto_a_larger_qcow2(gpt_lvm_capture: Captured, tmp_path: Path, imgclone: Run, state_dir: Path) -> None:
    _, archive, _, _ = gpt_lvm_capture
    target = tmp_path / "big.qcow2"
    out = restore(imgclone, archive, "-d", str(target), "--size", "3G")
    facts = check_clone(archive, [(str(target), "qcow2")], tmp_path)
    assert facts["lvs"] == [
        "/dev/altinst_rootvg/alt_root",
        "/dev/altinst_rootvg/alt_swap",
        "/dev/altinst_rootvg/alt_var",
    ]
    assert facts["parttype"] == "gpt"
    uuids = facts["uuids"]
    assert isinstance(uuids, dict)
    assert f"UUID={uuids['fs-boot']}" in str(facts["fstab"]), "fstab does not name the new /boot UUID"
    assert out["phase1"]["uuids"]["fs-root"] == uuids["fs-root"]  # type: ignore[index]
    assert len(list(state_dir.glob("*.json"))) == 1, "Phase 1 state was not recorded"
    # the root LV grew past 512 MiB, where mke2fs would pick 4 KiB blocks: the source's 1 KiB blocks were replayed
    source = {f["id"]: f["features"] for f in read_manifest_doc(str(archive))["layout"]["filesystems"]}
    made = facts["features"]
    assert isinstance(made, dict)
    lvs = out["plan"]["target"]["lvs"]  # type: ignore[index]
    assert next(lv["size"] for lv in lvs if lv["name"] == "alt_root") > 512 << 20
    for fs_id in ("fs-root", "fs-boot"):
        assert made[fs_id] == source[fs_id], fs_id
    assert made["fs-root"]["block_size"] == 1024
    keys = ("crc", "finobt", "rmapbt", "reflink", "bigtime", "inobtcount", "sparse", "ftype", "blocksize", "inodesize")
    assert {k: made["fs-var"]["xfs"][k] for k in keys} == {k: source["fs-var"]["xfs"][k] for k in keys}


def test_fit_onto_a_small_raw_with_xfs(gpt_lvm_capture: Captured, tmp_path: Path, imgclone: Run) -> None:
    _, archive, _, _ = gpt_lvm_capture
    target = tmp_path / "small.img"
    restore(imgclone, archive, "-d", str(target), "--resize", "fit", "--convert", "ext4=xfs")
    assert target.stat().st_size < GiB + (64 << 20)
    facts = check_clone(archive, [(str(target), "raw")], tmp_path)
    assert facts["types"] == {"fs-root": "xfs", "fs-var": "xfs", "fs-boot": "xfs", "fs-boot-efi": "vfat"}
    assert "\t/\txfs\t" in str(facts["fstab"])


def test_vg_spans_two_qcow2_targets(gpt_lvm_capture: Captured, tmp_path: Path, imgclone: Run) -> None:
    _, archive, _, _ = gpt_lvm_capture
    a, b = tmp_path / "a.qcow2", tmp_path / "b.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(b), "1G"], check=True)
    # with a layout file whose VG has 8 MiB extents (the source's are LVM's default 4 MiB): vgcreate -s 8192k
    shown = imgclone("archive", "show", "--layout", str(archive))
    layout = json.loads(shown.stdout)
    layout["vgs"][0]["extent_size"] = 8 << 20
    edited = tmp_path / "layout.json"
    edited.write_text(json.dumps(layout))
    out = restore(imgclone, archive, "-d", f"{a} {b}", "-i", str(edited))
    facts = check_clone(archive, [(str(a), "qcow2"), (str(b), "qcow2")], tmp_path)
    assert facts["pvs"] == ["/dev/sda3", "/dev/sdb1"]
    assert facts["extents"] == {"altinst_rootvg": 8 << 20}
    assert all(lv["size"] % (8 << 20) == 0 for lv in out["plan"]["target"]["lvs"])  # type: ignore[index]


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[str]:
    backing = tmp_path / "disk.raw"
    with open(backing, "wb") as f:
        f.truncate(2 * GiB)
    dev = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True, check=True)
    try:
        yield dev.stdout.strip()
    finally:
        subprocess.run(["losetup", "-d", dev.stdout.strip()], check=False)


def test_loop_device_as_a_physical_disk(
    gpt_lvm_capture: Captured, tmp_path: Path, imgclone: Run, loop_device: str
) -> None:
    _, archive, _, _ = gpt_lvm_capture
    restore(imgclone, archive, "-d", loop_device)
    check_clone(archive, [(loop_device, "raw")], tmp_path)
    again = imgclone("restore", "-a", str(archive), "-d", loop_device)
    assert again.returncode == 2 and b"holds a gpt partition table" in again.stderr, "a used disk must be refused"


def test_dry_run_and_too_small_write_nothing(gpt_lvm_capture: Captured, tmp_path: Path, imgclone: Run) -> None:
    _, archive, _, _ = gpt_lvm_capture
    new = str(tmp_path / "new.qcow2")
    r = imgclone("restore", "-a", str(archive), "-d", new, "--dry-run", "--resize", "fit", "--convert", "ext4=xfs")
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert "ext4 → xfs" in out and "root → alt_root" in out and "rootvg → altinst_rootvg" in out
    assert "nothing was written" in out
    small = tmp_path / "small.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(small), "256M"], check=True)
    before = small.read_bytes()
    r = imgclone("restore", "-a", str(archive), "-d", str(small), "--resize", "exact")
    assert r.returncode == 2, r.stderr.decode()
    assert b"MiB" in r.stderr and b"Traceback" not in r.stderr
    assert small.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.qcow2"]


def wait_for(node: str) -> None:
    """The partition nodes of a loop device: losetup -P's scan can miss them here, partx -u adds what is missing."""
    subprocess.run(["partx", "-u", node.rstrip("0123456789").removesuffix("p")], check=True)
    for _ in range(100):
        if os.path.exists(node):
            return
        time.sleep(0.1)
    raise AssertionError(f"{node} did not appear")


@pytest.fixture
def msdos_logical(tmp_path: Path) -> Iterator[tuple[str, list[Path]]]:
    """A loop disk with msdos partitions 1-3 and logical 5-6 (extended 4), each a mounted ext4 with a file."""
    backing = tmp_path / "logical.raw"
    with open(backing, "wb") as f:
        f.truncate(600 << 20)
    cuts = ["mkpart primary 1MiB 41MiB", "mkpart primary 41MiB 81MiB", "mkpart primary 81MiB 121MiB",
            "mkpart extended 121MiB 599MiB", "mkpart logical 122MiB 162MiB",
            "mkpart logical 163MiB 203MiB"]  # fmt: skip
    subprocess.run(["parted", "-s", str(backing), "mklabel", "msdos", *" ".join(cuts).split()], check=True)
    dev = subprocess.run(["losetup", "-P", "--find", "--show", str(backing)], capture_output=True, text=True,
                         check=True).stdout.strip()  # fmt: skip
    mounts: list[Path] = []
    try:
        wait_for(f"{dev}p6")
        for n in (1, 2, 3, 5, 6):
            subprocess.run(["mkfs.ext4", "-q", "-F", "-L", f"part{n}", f"{dev}p{n}"], check=True)
            mnt = tmp_path / f"m{n}"
            mnt.mkdir()
            subprocess.run(["mount", f"{dev}p{n}", str(mnt)], check=True)
            mounts.append(mnt)
            (mnt / "which").write_text(f"partition {n}\n")
        yield dev, mounts
    finally:
        for mnt in mounts:
            subprocess.run(["umount", str(mnt)], check=False)
        subprocess.run(["losetup", "-d", dev], check=False)


def test_msdos_logical_partitions_round_trip(
    msdos_logical: tuple[str, list[Path]], tmp_path: Path, imgclone: Run
) -> None:
    """Captured from a loop disk (no appliance), restored onto a raw image (one), checked on the host (none)."""
    dev, mounts = msdos_logical
    archive = tmp_path / "logical.mksysb"
    r = imgclone("capture", "--mount", *map(str, mounts), "-o", str(archive), "--no-progress")
    assert r.returncode == 0, r.stderr.decode()
    numbers = sorted(p["number"] for p in read_manifest_doc(str(archive))["layout"]["partitions"])
    assert numbers == [1, 2, 3, 5, 6]  # the extended partition is a container, not in the layout
    target = tmp_path / "clone.img"
    restore(imgclone, archive, "-d", str(target))
    table = subprocess.run(["parted", "-sm", str(target), "unit", "MiB", "print"], capture_output=True, text=True,
                           check=True).stdout.splitlines()[2:]  # fmt: skip
    assert [line.split(":")[0] for line in table] == ["1", "2", "3", "4", "5", "6"]
    clone = subprocess.run(["losetup", "-P", "--find", "--show", "-r", str(target)], capture_output=True, text=True,
                           check=True).stdout.strip()  # fmt: skip
    try:
        wait_for(f"{clone}p6")
        for n, mnt in zip((1, 2, 3, 5, 6), mounts, strict=True):
            label = subprocess.run(["blkid", "-o", "value", "-s", "LABEL", f"{clone}p{n}"], capture_output=True,
                                   text=True, check=False).stdout.strip()  # fmt: skip
            assert label == mnt.name.replace("m", "part"), f"partition {n} holds {label!r}"
            out = tmp_path / f"clone{n}"
            out.mkdir()
            subprocess.run(["mount", "-o", "ro", f"{clone}p{n}", str(out)], check=True)
            try:
                want, got = describe(str(mnt), times=False), describe(str(out), times=False)
                got[b"."] = want[b"."]  # the root directory's owner and mode come from mkfs, not the stream
                assert diff(want, got) == [], n
            finally:
                subprocess.run(["umount", str(out)], check=False)
    finally:
        subprocess.run(["losetup", "-d", clone], check=False)


def test_restore_reads_a_piped_capture_from_stdin(tmp_path: Path, state_dir: Path) -> None:
    """`capture -o - | restore -a -`: the first manifest has no streams yet; restore plans from it (with the source's
    inodes in use), takes each stream as it arrives and checks them against the final manifest. One appliance."""
    from tests import tricky
    from tests.guestcmp import extract_guest
    from tests.loopfs import loop_fs

    clone = tmp_path / "clone.qcow2"
    with loop_fs(tmp_path, "ext4", 96, name="src") as mnt:
        tricky.populate(mnt)
        st = os.statvfs(mnt)
        inodes = st.f_files - st.f_ffree
        cli = [sys.executable, "-m", "imgclone"]
        capture = subprocess.Popen([*cli, "capture", "--mount", str(mnt), "-o", "-", "--no-progress"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        assert capture.stdout is not None
        r = subprocess.run([*cli, "restore", "-a", "-", "-d", str(clone), "-P1", "--json", "--no-progress"],
                           stdin=capture.stdout, capture_output=True, check=False)  # fmt: skip
        capture.stdout.close()
        captured = capture.wait(), capture.stderr.read().decode() if capture.stderr else ""
        assert r.returncode == 0, f"restore: {r.stderr.decode()}\ncapture (exit {captured[0]}): {captured[1]}"
        assert captured[0] == 0, captured[1]
        out = json.loads(r.stdout)
        (row,) = [x for x in out["plan"]["rows"] if x["kind"] == "filesystem"]
        assert row["files"] == inodes, "planned with the first manifest's inodes: no stream had arrived"
        journal = json.loads(next(state_dir.glob("*.json")).read_text())
        assert journal["archive"] == "(standard input)" and list(journal["phases"]) == ["1"]
        want, restored = describe(str(mnt)), tmp_path / "restored"
        g = Appliance()
        g.add_drive(str(clone), readonly=True, format="qcow2")
        with g:
            extract_guest(g, "/dev/sda1", restored)
            got = describe(str(restored))
            g.mount_ro("/dev/sda1", "/")  # tar_out reads sparse files densely: ask the clone how much they occupy
            for rel in (rel for rel, meta in want.items() if meta.get("sparse")):
                st = g.statns(rel[1:].decode())
                got[rel]["sparse"] = st["st_blocks"] * 512 < st["st_size"] // 2
        assert diff(want, got) == []
        acls = [sorted(tricky.acls(root).split("\n\n")) for root in (mnt, restored)]  # one block a file, any order
        assert acls[0] == acls[1]
