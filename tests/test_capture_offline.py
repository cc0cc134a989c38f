"""Capture a GPT + LVM qcow2 offline through libguestfs; the image is never written."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from fixtures.small_image import cached_gpt_lvm_image

pytestmark = pytest.mark.integration
Run = Callable[..., subprocess.CompletedProcess[bytes]]


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str, subprocess.CompletedProcess[bytes]]:
    image = cached_gpt_lvm_image(tmp_path_factory.getbasetemp() / "images")
    before = sha(image)
    work = tmp_path_factory.mktemp("offline")
    extra = work / "exclude.list"
    extra.write_text("^./home/u/file with space$\n")
    out = work / "img.mksysb"
    r = subprocess.run([__import__("sys").executable, "-m", "imgclone", "capture", str(image), "-o", str(out),
                        "-e", str(extra), "--json"], capture_output=True, check=False)  # fmt: skip
    return image, out, before, r


def test_capture_succeeds_and_image_untouched(
    captured: tuple[Path, Path, str, subprocess.CompletedProcess[bytes]],
) -> None:
    image, out, before, r = captured
    assert r.returncode == 0, r.stderr.decode()
    assert sha(image) == before, "capture changed the source image"
    summary = json.loads(r.stdout)
    assert sorted(s["mountpoint"] for s in summary["streams"]) == ["/", "/boot", "/boot/efi", "/var"]


def test_manifest_layout_and_boot_facts(captured: tuple[Path, Path, str, subprocess.CompletedProcess[bytes]]) -> None:
    _, out, _, _ = captured
    m = json.loads(tarfile.open(out).extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert m["source"]["kind"] == "image" and m["complete"]
    assert m["boot"]["firmware"].startswith("uefi") and m["boot"]["root_device"] == "/dev/mapper/rootvg-root"
    assert [vg["name"] for vg in m["layout"]["vgs"]] == ["rootvg"]
    assert sorted(lv["name"] for lv in m["layout"]["lvs"]) == ["root", "swap", "var"]
    assert m["excludes"]["patterns"] == ["^./var/tmp/", "^./home/u/file with space$"]


def _listing(out: Path, fs_id: str) -> list[str]:
    cmd = f"tar -xOf {out} --wildcards 'streams/{fs_id}.tar.zst.*' | zstd -d | tar -t"
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], capture_output=True, check=True, text=True
    ).stdout.split()


def test_streams_hold_one_filesystem_each_and_honour_excludes(
    captured: tuple[Path, Path, str, subprocess.CompletedProcess[bytes]],
) -> None:
    _, out, _, _ = captured
    var = _listing(out, "fs-var")
    assert "./tmp/" in var and "./tmp/junk.txt" not in var, "the image's /etc/exclude.rootvg (^./var/tmp/) was ignored"
    assert "./log/app.log" in var
    root = _listing(out, "fs-root")
    assert "./etc/fstab" in root and "./var/log/app.log" not in root, "a stream crossed into another filesystem"
    assert "./home/u/hard1" in root and "./home/u/file" not in root, "-e list was ignored"


def test_verify(captured: tuple[Path, Path, str, subprocess.CompletedProcess[bytes]], imgclone: Run) -> None:
    _, out, _, _ = captured
    r = imgclone("archive", "verify", str(out))
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
