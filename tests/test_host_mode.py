"""Host mode (--via host): Phase 1 on this host's kernel and tools, no appliance, for real on loop devices.

- every kind of file (tests/tricky.py) restored onto a loop device comes back as it was captured, owners by number;
- msdos logical partitions restored into a raw image, which imgclone attaches as a loop device itself and lets go;
- where the phases work is said, and why (--dry-run, --json); what --via host cannot do is refused in one line,
  with nothing written;
- a run killed in the middle of extracting leaves no mount and no loop device, and `alt cleanup --wipe` blanks
  the target.

None of these launches an appliance but the last (alt cleanup). The copy of a bootable fixture through the host,
booted, is tests/test_e2e_more.py's ext3 test.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imgclone.archive.reader import read_manifest
from imgclone.guest import via
from tests import tricky
from tests.conftest import _run_imgclone as run_imgclone
from tests.loopfs import loop_fs
from tests.treecmp import describe, diff

pytestmark = pytest.mark.integration
Run = Callable[..., subprocess.CompletedProcess[bytes]]
MiB = 1 << 20


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def loop_disk(tmp_path: Path) -> Iterator[str]:
    """An empty 400 MiB loop device: a physical disk's stand-in."""
    backing = tmp_path / "disk.raw"
    with open(backing, "wb") as f:
        f.truncate(400 * MiB)
    dev = sh("losetup", "--find", "--show", str(backing)).strip()
    try:
        yield dev
    finally:
        subprocess.run(["partx", "-d", dev], check=False, capture_output=True)  # what parted told the kernel
        subprocess.run(["losetup", "-d", dev], check=False)


@pytest.fixture(scope="module")
def tricky_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[bytes, dict[str, object]]]:
    """tests/tricky.py's tree on a loop-mounted ext4, captured (no appliance); the tree as it was."""
    work = tmp_path_factory.mktemp("tricky")
    archive = work / "tricky.mksysb"
    with loop_fs(work, "ext4", 160, name="src") as mnt:
        tricky.populate(mnt)
        want = describe(str(mnt))
        r = run_imgclone("capture", "--mount", str(mnt), "-o", str(archive), "--no-progress")
        assert r.returncode == 0, r.stderr.decode()
    return archive, want


def mounted_anywhere(disk: str) -> list[str]:
    """Mounts of the disk or its partitions held by any process, in any mount namespace (imgclone's own one
    included, were it still alive): "pid: mount point"."""
    found = []
    for info in Path("/proc").glob("[0-9]*/mountinfo"):
        try:
            lines = info.read_text().splitlines()
        except OSError:
            continue  # the process is gone
        for line in lines:
            fields = line.split()
            source = fields[fields.index("-") + 2]
            if source == disk or source.startswith(f"{disk}p"):
                found.append(f"{info.parent.name}: {fields[4]}")
    return found


def partitions(disk: str, *numbers: int) -> None:
    """The kernel's partitions of a loop device, and their nodes (partx adds what the scan missed: `partx -u` misses
    the logical ones, `partx -a` then adds them; devtmpfs makes the nodes a moment later)."""
    sh("partx", "-u", disk)
    subprocess.run(["partx", "-a", disk], capture_output=True, check=False)  # "busy" for those -u added
    for _ in range(100):
        if all(os.path.exists(f"{disk}p{n}") for n in numbers):
            return
        time.sleep(0.1)
    raise AssertionError(f"partitions {numbers} of {disk} did not appear")


def loops_of(image: Path) -> list[str]:
    return [line.split(":")[0] for line in sh("losetup", "-j", str(image)).splitlines()]


def test_every_kind_of_file_comes_back_restored_on_the_host(
    tricky_archive: tuple[Path, dict[bytes, dict[str, object]]], loop_disk: str, tmp_path: Path, imgclone: Run
) -> None:
    archive, want = tricky_archive
    r = imgclone("restore", "-a", str(archive), "-d", loop_disk, "-P1", "--via", "host", "--json", "--no-progress")
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout)
    assert out["via"] == {"via": "host", "why": "--via host"}
    assert mounted_anywhere(loop_disk) == [], "the clone is unmounted in every namespace"
    mnt = tmp_path / "clone"
    mnt.mkdir()
    sh("mount", "-o", "ro", f"{loop_disk}p1", str(mnt))
    try:
        got = describe(str(mnt))
    finally:
        sh("umount", str(mnt))
    got[b"."] = want[b"."]  # the root directory's owner and mode come from mkfs, not the stream
    assert diff(want, got) == []
    assert got[b"./data/with space"]["uid"] == 12345, "owners by number, not by this host's user names"
    assert {"user.note", "trusted.secret", "security.selinux"} <= set(got[b"./data/big"]["xattrs"]), got[b"./data/big"]


def test_logical_partitions_into_a_raw_image_attached_by_imgclone(tmp_path: Path, imgclone: Run) -> None:
    """A raw image target with --via host: imgclone attaches it as a loop device and detaches it at the end; the
    extended partition and its logical ones are made by the host's parted as the appliance's."""
    backing = tmp_path / "logical-src.raw"
    with open(backing, "wb") as f:
        f.truncate(300 * MiB)
    cuts = ["mkpart primary 1MiB 41MiB", "mkpart primary 41MiB 81MiB", "mkpart primary 81MiB 121MiB",
            "mkpart extended 121MiB 299MiB", "mkpart logical 122MiB 162MiB",
            "mkpart logical 163MiB 203MiB"]  # fmt: skip
    sh("parted", "-s", str(backing), "mklabel", "msdos", *" ".join(cuts).split())
    src = sh("losetup", "-P", "--find", "--show", str(backing)).strip()
    mounts = []
    numbers = (1, 2, 3, 5, 6)  # more than four: the plan keeps 1-3 primary, the rest logical in an extended 4
    try:
        partitions(src, *numbers)
        for n in numbers:
            sh("mkfs.ext4", "-q", "-F", "-L", f"part{n}", f"{src}p{n}")
            mnt = tmp_path / f"m{n}"
            mnt.mkdir()
            sh("mount", f"{src}p{n}", str(mnt))
            mounts.append(mnt)
            (mnt / "which").write_text(f"partition {n}\n")
        archive = tmp_path / "logical.mksysb"
        r = imgclone("capture", "--mount", *map(str, mounts), "-o", str(archive), "--no-progress")
        assert r.returncode == 0, r.stderr.decode()
    finally:
        for mnt in mounts:
            subprocess.run(["umount", str(mnt)], check=False)
        subprocess.run(["losetup", "-d", src], check=False)
    target = tmp_path / "clone.img"
    r = imgclone("restore", "-a", str(archive), "-d", str(target), "-P1", "--via", "host", "--no-progress")
    assert r.returncode == 0, r.stderr.decode()
    assert "the phases work on the clone via host: --via host" in r.stdout.decode()
    assert loops_of(target) == [], "the loop device imgclone attached is let go (so nothing mounts it any more)"
    table = sh("parted", "-sm", str(target), "unit", "MiB", "print").splitlines()[2:]
    assert [line.split(":")[0] for line in table] == ["1", "2", "3", "4", "5", "6"]
    clone = sh("losetup", "-P", "-r", "--find", "--show", str(target)).strip()
    try:
        partitions(clone, *numbers)
        for n in numbers:
            assert sh("blkid", "-o", "value", "-s", "LABEL", f"{clone}p{n}").strip() == f"part{n}"
            assert sh("debugfs", "-R", "cat /which", f"{clone}p{n}") == f"partition {n}\n"
    finally:
        subprocess.run(["losetup", "-d", clone], check=False)


def test_the_choice_is_said_and_what_host_mode_cannot_do_is_refused(
    tricky_archive: tuple[Path, dict[bytes, dict[str, object]]], loop_disk: str, tmp_path: Path, imgclone: Run
) -> None:
    archive, _ = tricky_archive
    image = tmp_path / "new.img"
    r = imgclone("restore", "-a", str(archive), "-d", str(image), "--dry-run", "--json")
    assert r.returncode == 0, r.stderr.decode()
    chosen = json.loads(r.stdout)["via"]
    assert chosen["via"] == "appliance" and "images stay with the appliance" in chosen["why"], chosen
    r = imgclone("restore", "-a", str(archive), "-d", loop_disk, "--dry-run")
    assert r.returncode == 0, r.stderr.decode()
    layout = read_manifest(str(archive)).layout
    types, tools, _ = via.needs(layout)
    expected = via.choose("auto", [via.Drive(loop_disk, "raw", True)], layout, via.abilities(types, tools))
    assert r.stdout.decode().splitlines()[0] == f"the phases work on the clone via {expected.via}: {expected.reason}"
    assert expected.via == "host", "this host (as CI's) has ext4 and the tools: a block device is restored on it"
    qcow2 = tmp_path / "new.qcow2"
    r = imgclone("restore", "-a", str(archive), "-d", str(qcow2), "--via", "host")
    lines = r.stderr.decode().splitlines()
    assert r.returncode == 2 and len(lines) == 1, lines
    assert "--via host: " in lines[0] and "qcow2 image" in lines[0] and "Traceback" not in lines[0]
    assert not qcow2.exists() and not image.exists()
    blank = subprocess.run(["blkid", "-p", loop_disk], capture_output=True, check=False)
    assert blank.returncode == 2 and blank.stdout == b"", "--dry-run wrote nothing to the disk"


def test_a_run_killed_while_extracting_leaves_no_mount_and_no_loop_device(
    tricky_archive: tuple[Path, dict[bytes, dict[str, object]]], tmp_path: Path, imgclone: Run
) -> None:
    archive, _ = tricky_archive
    target = tmp_path / "killed.img"
    r = imgclone("restore", "-a", str(archive), "-d", str(target), "-P1", "--via", "host", "--no-progress",
                 env={"IMGCLONE_FAULT": "1:stream"})  # fmt: skip
    assert r.returncode == -9, r.stderr.decode()
    # killed with the stream's filesystem mounted from the loop device: the mount went with the run's own mount
    # namespace, and then the loop device (autoclear) with its last user
    for _ in range(50):
        if not loops_of(target):
            break
        time.sleep(0.1)
    assert loops_of(target) == []
    left = [d for d in os.listdir("/") if d.startswith("alt_inst")]
    assert all(os.listdir(f"/{d}") == [] for d in left), left
    assert subprocess.run(["blkid", "-p", str(target)], capture_output=True, check=False).returncode == 0
    r = imgclone("alt", "cleanup", "-d", str(target), "--wipe")
    assert r.returncode == 0, r.stderr.decode()
    blank = subprocess.run(["blkid", "-p", str(target)], capture_output=True, check=False)
    assert blank.returncode == 2 and blank.stdout == b"", "wiped back to blank"
