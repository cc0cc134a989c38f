"""Capture a GPT + LVM qcow2 offline through libguestfs; the image is never written."""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.treecmp import file_sha256

pytestmark = pytest.mark.integration
Run = Callable[..., subprocess.CompletedProcess[bytes]]


Captured = tuple[Path, Path, str, subprocess.CompletedProcess[bytes]]


@pytest.fixture(scope="module")
def captured(gpt_lvm_capture: Captured) -> Captured:
    return gpt_lvm_capture


def test_capture_succeeds_and_image_untouched(
    captured: Captured,
) -> None:
    image, out, before, r = captured
    assert r.returncode == 0, r.stderr.decode()
    assert file_sha256(image) == before, "capture changed the source image"
    summary = json.loads(r.stdout)
    assert sorted(s["mountpoint"] for s in summary["streams"]) == ["/", "/boot", "/boot/efi", "/var"]


def test_manifest_layout_and_boot_facts(captured: Captured) -> None:
    _, out, _, _ = captured
    m = json.loads(tarfile.open(out).extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert m["source"]["kind"] == "image" and m["complete"]
    assert m["boot"]["firmware"].startswith("uefi") and m["boot"]["root_device"] == "/dev/mapper/rootvg-root"
    assert [vg["name"] for vg in m["layout"]["vgs"]] == ["rootvg"]
    assert sorted(lv["name"] for lv in m["layout"]["lvs"]) == ["root", "swap", "var"]
    assert m["excludes"]["patterns"] == ["^./var/tmp/", "^./home/u/file with space$"]
    # inodes in use, read in the capture's appliance before the streams (vfat has no inode table): what a restore
    # reading this archive from a pipe plans with; here at least the names kept, as nothing is hardlinked twice
    files = {s["fs"]: s["files"] for s in m["streams"]}
    assert sorted(m["inodes"]) == ["fs-boot", "fs-root", "fs-var"], m["inodes"]
    assert all(m["inodes"][fs] >= files[fs] for fs in m["inodes"]), (m["inodes"], files)


def test_manifest_records_content_facts_from_the_tar_stream(captured: Captured) -> None:
    _, out, _, _ = captured
    m = json.loads(tarfile.open(out).extractfile("manifest.json").read())  # type: ignore[union-attr]
    content = {s["fs"]: s["content"] for s in m["streams"]}
    assert content["fs-root"] == {
        "largest_file": 64 * 1024 * 1024, "largest_file_path": "/home/u/sparse",
        "most_links": 2, "most_links_path": content["fs-root"]["most_links_path"],
        "largest_xattr": 5, "largest_xattr_name": "user.imgclone", "largest_xattr_path": "/home/u/xattr",
    }  # fmt: skip
    assert content["fs-root"]["most_links_path"] in ("/home/u/hard1", "/home/u/hard2"), "the first of the two names"
    assert content["fs-var"]["largest_file"] == 8000 and content["fs-var"]["largest_file_path"] == "/var/log/app.log"
    assert content["fs-var"]["largest_xattr"] == 0


def _listing(out: Path, fs_id: str) -> list[str]:
    cmd = f"tar -xOf {out} --wildcards 'streams/{fs_id}.tar.zst.*' | zstd -d | tar -t"
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], capture_output=True, check=True, text=True
    ).stdout.split()


def test_streams_hold_one_filesystem_each_and_honour_excludes(
    captured: Captured,
) -> None:
    _, out, _, _ = captured
    var = _listing(out, "fs-var")
    assert "./tmp/" in var and "./tmp/junk.txt" not in var, "the image's /etc/exclude.rootvg (^./var/tmp/) was ignored"
    assert "./log/app.log" in var
    root = _listing(out, "fs-root")
    assert "./etc/fstab" in root and "./var/log/app.log" not in root, "a stream crossed into another filesystem"
    assert "./home/u/hard1" in root and "./home/u/file" not in root, "-e list was ignored"


def test_verify(captured: Captured, imgclone: Run) -> None:
    _, out, _, _ = captured
    r = imgclone("archive", "verify", str(out))
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
