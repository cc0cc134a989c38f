"""btrfs subvolumes captured and restored one stream each (model/trees.py), through the real tools:

- a btrfs on a loop device (top-level file, @, @/nested, a read-only snapshot in @), captured from this host with
  --snapshots, restored into an image: each subvolume made again (the snapshot read-only), `archive verify
  --against` finds every file where it was; a restore killed after making and filling them leaves a target that
  `alt cleanup --wipe` blanks;
- the btrfs fixture (fixtures/stacks.py: @ at /, @home, snapper's @/.snapshots with a snapshot) captured offline,
  restored onto a smaller target, verified, booted; the snapshot left out, its directory too;
- the btrfs-default fixture (/ is the default subvolume, no subvol= in fstab) cloned with `copy --source` onto a
  bigger image: the clone's default subvolume is its @rootfs, and it boots.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imgclone import faults
from imgclone.guest.appliance import Appliance
from tests.loopfs import loop_fs

pytestmark = pytest.mark.integration
Run = Callable[..., subprocess.CompletedProcess[bytes]]


def _ok(r: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    assert r.returncode == 0, r.stderr.decode()[-4000:]
    return dict(json.loads(r.stdout)) if r.stdout.strip() else {}


def _verified(imgclone: Run, archive: Path, target: Path) -> dict[str, Any]:
    """archive verify --against: every file of every stream on the target, but what imgclone's rules explain."""
    r = imgclone("archive", "verify", str(archive), "--against", str(target), "--json")
    report = dict(json.loads(r.stdout))
    errors = [d for f in report["filesystems"] for d in f["differences"] if not d["rule"]]
    assert r.returncode == 0 and report["ok"], (errors[:50], report["notes"], r.stderr.decode()[-2000:])
    assert report["summary"]["missing"] == report["summary"]["extra"] == 0, report["summary"]
    return report


def _subvolumes(image: Path) -> tuple[list[str], str, list[str]]:
    """(each subvolume's path, the default's line, the read-only ones) of the image's btrfs, read in an appliance."""
    g = Appliance()
    g.add_drive(str(image), readonly=True, format="qcow2")
    with g:
        [device] = [d for d, kind in g.list_filesystems().items() if kind == "btrfs" and d.startswith("/dev/")]
        g.mount_options("subvolid=5", device, "/")
        listed = g.appliance_command(["btrfs", "subvolume", "list", "/sysroot"])
        default = g.appliance_command(["btrfs", "subvolume", "get-default", "/sysroot"]).strip()
        ro = g.appliance_command(["btrfs", "subvolume", "list", "-r", "/sysroot"])
    paths = [line.split(" path ", 1)[1] for line in listed.splitlines() if " path " in line]
    return paths, default, [line.split(" path ", 1)[1] for line in ro.splitlines() if " path " in line]


def _gone(image: Path, wait: float = 30.0) -> None:
    """No process left with the image on its command line (the killed run's appliance)."""
    deadline = time.monotonic() + wait
    while subprocess.run(["pgrep", "-f", str(image)], capture_output=True, check=False).returncode == 0:
        assert time.monotonic() < deadline, f"a process still holds {image} {wait:g} s after the kill"
        time.sleep(0.5)


def _boots(imgclone: Run, image: Path) -> None:
    boot = _ok(imgclone("boot-test", str(image), "--timeout", "600", "--json"))
    assert boot["ok"] and boot["marker_line"].startswith("IMGCLONE-BOOT-OK "), boot["log_tail"]


def test_host_capture_restores_each_subvolume_and_keeps_snapshots_when_asked(tmp_path: Path, imgclone: Run) -> None:
    with loop_fs(tmp_path, "btrfs", 256, name="top") as top:
        (top / "top.txt").write_text("in the top level\n")
        subprocess.run(["btrfs", "subvolume", "create", str(top / "@")], check=True, capture_output=True)
        (top / "@" / "etc").mkdir()
        (top / "@" / "etc" / "hostname").write_text("sub\n")
        subprocess.run(["btrfs", "subvolume", "create", str(top / "@" / "nested")], check=True, capture_output=True)
        (top / "@" / "nested" / "deep.txt").write_text("nested\n")
        subprocess.run(["btrfs", "subvolume", "snapshot", "-r", str(top / "@"), str(top / "@" / "snap")], check=True,
                       capture_output=True)  # fmt: skip
        archive = tmp_path / "b.mksysb"
        cap = _ok(imgclone("capture", "--mount", str(top), "-o", str(archive), "--snapshots", "--json"))
    streams = {s.get("subvolume") or s["fs"]: s for s in cap["streams"]}  # ids: sv-<mount point's path>-top-@ ...
    by_sv = {k.split("-top-", 1)[1]: s["files"] for k, s in streams.items() if k.startswith("sv-")}
    # each stream holds its own tree and nothing nested in it: @ has ., etc, etc/hostname; the top level ., top.txt
    assert by_sv == {"@": 3, "@-nested": 2, "@-snap": 4}, by_sv
    assert [s["files"] for k, s in streams.items() if not k.startswith("sv-")] == [2]
    clone = tmp_path / "clone.qcow2"
    restore = ("restore", "-a", str(archive), "-d", str(clone), "-P1", "--no-progress", "--json")  # data: no /
    # killed once the subvolumes are made and filled, before the snapshot is read-only again: `alt cleanup --wipe`
    # blanks the target, which a restore without --force then takes (it refuses a target that holds anything)
    r = imgclone(*restore, env={faults.ENV: "1:seal_subvolumes"})
    assert r.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), r.stderr.decode()
    _gone(clone)
    _ok(imgclone("alt", "cleanup", "-d", str(clone), "--wipe", "--json"))
    _ok(imgclone(*restore))
    paths, _, ro = _subvolumes(clone)
    assert sorted(paths) == ["@", "@/nested", "@/snap"] and ro == ["@/snap"], (paths, ro)
    report = _verified(imgclone, archive, clone)
    assert {f["fs"] for f in report["filesystems"]} == set(streams)


def test_btrfs_fixture_captured_offline_restored_smaller_verified_and_boots(tmp_path: Path, imgclone: Run) -> None:
    from fixtures.stacks import fixture_path

    archive, clone = tmp_path / "b.mksysb", tmp_path / "clone.qcow2"
    cap = _ok(imgclone("capture", str(fixture_path("btrfs")), "-o", str(archive), "--json"))
    trees = {s.get("subvolume") or s["fs"]: s["mountpoint"] for s in cap["streams"]}
    assert trees == {"sv-root-@": "/", "sv-root-@home": "/home", "sv-root-@-.snapshots": "/.snapshots",
                     "fs-root": "", "fs-boot": "/boot"}, trees  # fmt: skip
    _ok(imgclone("restore", "-a", str(archive), "-d", str(clone), "--resize", "fit", "--no-progress", "--json"))
    source_size = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(fixture_path("btrfs"))],
                                            capture_output=True, check=True).stdout)["virtual-size"]  # fmt: skip
    clone_size = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(clone)], capture_output=True,
                                           check=True).stdout)["virtual-size"]  # fmt: skip
    assert clone_size < source_size, (clone_size, source_size)
    paths, default, _ = _subvolumes(clone)
    assert sorted(paths) == ["@", "@/.snapshots", "@home"], paths  # the snapshot is left out by default
    assert default.startswith("ID 5 "), default
    report = _verified(imgclone, archive, clone)
    assert report["summary"]["compared"] > 10000
    _boots(imgclone, clone)


def test_btrfs_default_fixture_copied_bigger_keeps_its_default_subvolume_and_boots(tmp_path: Path,
                                                                                  imgclone: Run) -> None:  # fmt: skip
    from fixtures.stacks import fixture_path

    clone = tmp_path / "clone.qcow2"
    _ok(imgclone("copy", "--source", str(fixture_path("btrfs-default")), "-d", str(clone), "--size", "6G",
                 "--no-progress", "--json"))  # fmt: skip
    paths, default, _ = _subvolumes(clone)
    assert sorted(paths) == ["@home", "@rootfs"], paths
    assert default.endswith(" path @rootfs"), f"the root is the default subvolume, as on the source: {default}"
    _boots(imgclone, clone)


def test_capture_of_a_btrfs_over_two_devices_is_refused_by_name(tmp_path: Path, imgclone: Run) -> None:
    """A raid1 btrfs over two loop devices, mounted: one line naming both devices, exit 2, no archive."""
    loops: list[str] = []
    mnt = tmp_path / "m"
    mnt.mkdir()
    try:
        for name in ("a.img", "b.img"):
            subprocess.run(["truncate", "-s", "200M", str(tmp_path / name)], check=True)
            loops.append(subprocess.run(["losetup", "--find", "--show", str(tmp_path / name)], capture_output=True,
                                        text=True, check=True).stdout.strip())  # fmt: skip
        subprocess.run(
            ["mkfs.btrfs", "-q", "-f", "-d", "raid1", "-m", "raid1", *loops], check=True, capture_output=True
        )
        subprocess.run(["mount", loops[0], str(mnt)], check=True)
        r = imgclone("capture", "--mount", str(mnt), "-o", str(tmp_path / "x.mksysb"))
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        for dev in loops:
            subprocess.run(["losetup", "-d", dev], check=False)
    err = r.stderr.decode()
    assert r.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"a btrfs on 2 devices ({loops[0]}, {loops[1]})" in err and "not supported yet" in err, err
    assert not list(tmp_path.glob("x.mksysb*"))
