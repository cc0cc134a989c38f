"""Bad input, table-driven: every case is refused with its exit code and one line on stderr, and writes nothing.

Each case runs `imgclone ARGV` in a fresh working directory (also its TMPDIR and IMGCLONE_STATE_DIR) that holds
the targets and inputs its setup made; the module's archive (captured once from a loop-mounted ext4, no
appliance) is the source. Before and after: a digest of every file there and of the module's archive (sparse
images: their size and the content of their data extents), so "nothing written" means no file changed, no file
or journal appeared. Most cases are refused before an appliance starts; none needs one.

Choices the table records (docs/reliability.md):
- `-S` skips the data check only: a target whose geometry cannot hold the planned partitions is refused with or
  without it, and with `-S` a plan whose filesystems are too small for their data goes on with one warning.
- An empty exclude list excludes nothing, as `grep -v -f EMPTY` keeps every line: the capture goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from imgclone.archive import container as arc
from imgclone.archive.reader import read_manifest_doc
from tests.conftest import shared
from tests.loopfs import sh

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration  # loop devices and mounts (root); no appliance


@dataclass(frozen=True)
class Env:
    """What a case's setup works with: its directory, the module's archive, and a stack for clean-up."""

    w: Path
    archive: Path
    stack: ExitStack
    subs: dict[str, str]


Setup = Callable[[Env], None]


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # {w}: the case's directory, {a}: the module's archive, others from setup
    rc: int
    words: tuple[str, ...]  # in the one line on stderr; () with rc 0: stderr is empty
    setup: tuple[Setup, ...] = ()
    creates: tuple[str, ...] = ()  # files (relative to {w}) the case may create: only for rc 0

    def __str__(self) -> str:
        return self.id


# -- set-ups: cheap files, loop devices (always detached again) ------------------------------------------------------


def sparse(name: str, size: str) -> Setup:
    def make(env: Env) -> None:
        sh("truncate", "-s", size, str(env.w / name))

    return make


def text(name: str, content: str, mode: int = 0o644) -> Setup:
    def make(env: Env) -> None:
        (env.w / name).write_text(content)
        (env.w / name).chmod(mode)

    return make


def directory(name: str) -> Setup:
    def make(env: Env) -> None:
        (env.w / name).mkdir()

    return make


def derived_archive(name: str, change: Callable[[bytes], bytes]) -> Setup:
    """A copy of the module's archive, changed."""

    def make(env: Env) -> None:
        (env.w / name).write_bytes(change(env.archive.read_bytes()))

    return make


def newer_format(env: Env) -> None:
    """An archive whose (valid, self-digested) manifest says format version FORMAT_VERSION + 1."""
    m = read_manifest_doc(env.archive)
    m.pop(arc.DIGEST, None)
    m["format_version"] = arc.FORMAT_VERSION + 1
    data = arc.manifest_bytes(m)
    with open(env.w / "v2.mksysb", "wb") as f:
        f.write(arc.tar_header(arc.MANIFEST, len(data)) + data + arc.tar_pad(len(data)) + b"\0" * 1024)


def plain_tar(env: Env) -> None:
    (env.w / "notes.txt").write_text("not an archive\n")
    with tarfile.open(env.w / "plain.tar", "w") as t:
        t.add(env.w / "notes.txt", arcname="notes.txt")


def layout(name: str, change: Callable[[dict[str, object]], object]) -> Setup:
    """A -i layout file: the archive's layout (archive show --layout) changed."""

    def make(env: Env) -> None:
        base = read_manifest_doc(env.archive)["layout"]
        doc = change(json.loads(json.dumps(base)))
        (env.w / name).write_text(json.dumps(base if doc is None else doc))

    return make


def lvm_layout(lv: str = "data", vg: str = "rootvg", lv_size: int = 64 << 20, part_size: int = 98 << 20,
               lv_vg: str = "vg-1", pv: str = "part-1") -> Callable[[dict[str, object]], object]:  # fmt: skip
    """The archive's filesystem moved onto LV `lv` of VG `vg` on a GPT partition of its disk."""

    def change(d: dict[str, object]) -> object:
        disk = d["disks"][0]  # type: ignore[index]
        disk.update(table="gpt", size=100 << 20)
        d["partitions"] = [{"id": "part-1", "disk": disk["id"], "number": 1, "start": 1 << 20, "size": part_size,
                            "flags": ["lvm"]}]  # fmt: skip
        d["vgs"] = [{"id": "vg-1", "name": vg, "pvs": [pv]}]
        d["lvs"] = [{"id": "lv-1", "vg": lv_vg, "name": lv, "size": lv_size}]
        d["filesystems"][0]["device"] = "lv-1"  # type: ignore[index]
        return d

    return change


def subvolume_on_ext4(d: dict[str, object]) -> object:
    """A btrfs subvolume on the archive's ext4 filesystem."""
    d["subvolumes"] = [{"id": "sv-1", "filesystem": d["filesystems"][0]["id"], "path": "@"}]  # type: ignore[index]
    return d


def thin_without_pool(d: dict[str, object]) -> object:
    """lvm_layout's filesystem on a thin LV whose pool is a plain LV."""
    d = lvm_layout(lv_size=32 << 20)(d)  # type: ignore[assignment]
    d["lvs"] = [
        {"id": "lv-pool", "vg": "vg-1", "name": "pool", "size": 32 << 20},
        {"id": "lv-1", "vg": "vg-1", "name": "data", "size": 64 << 20, "kind": "thin", "pool": "lv-pool"},
    ]
    return d


def fs_field(key: str, value: object) -> Callable[[dict[str, object]], object]:
    def change(d: dict[str, object]) -> object:
        d["filesystems"][0][key] = value  # type: ignore[index]
        return d

    return change


def top(key: str, value: object) -> Callable[[dict[str, object]], object]:
    def change(d: dict[str, object]) -> object:
        d[key] = value
        return d

    return change


def loop(name: str = "disk.img", size: str = "64M") -> Setup:
    """A sparse file attached to a loop device: {dev}."""

    def make(env: Env) -> None:
        backing = env.w / name
        sh("truncate", "-s", size, str(backing))
        dev = sh("losetup", "--find", "--show", str(backing)).strip()
        env.stack.callback(subprocess.run, ["losetup", "-d", dev], check=False)
        env.subs["dev"] = dev

    return make


def mounted_ro(env: Env) -> None:
    """An ext4 on {dev}, mounted read-only at {w}/mnt (read-only: the kernel writes nothing while it is checked)."""
    sh("mkfs.ext4", "-q", "-F", env.subs["dev"])
    (env.w / "mnt").mkdir()
    sh("mount", "-o", "ro", env.subs["dev"], str(env.w / "mnt"))
    env.stack.callback(subprocess.run, ["umount", str(env.w / "mnt")], check=False)


def gpt_table(env: Env) -> None:
    subprocess.run(["sfdisk", "-q", env.subs["dev"]], input="label: gpt\n,16M\n", text=True, check=True,
                   capture_output=True)  # fmt: skip


def pv(env: Env) -> None:
    sh("pvcreate", "-q", "-y", "-ff", env.subs["dev"])


def vg(env: Env) -> None:
    """A VG on {dev}, without LVM metadata backups on the host; removed again before the loop is detached. Its name
    is the case's own: VG names are the host's, and another run of these tests may make one at the same time."""
    name = f"badinput_{uuid.uuid4().hex[:8]}"
    sh("vgcreate", "-q", "-A", "n", name, env.subs["dev"])
    env.stack.callback(subprocess.run, ["vgremove", "-q", "-ff", "-y", "-A", "n", name], check=False)


def ext4_image(name: str) -> Setup:
    def make(env: Env) -> None:
        sh("truncate", "-s", "100M", str(env.w / name))
        sh("mkfs.ext4", "-q", "-F", str(env.w / name))

    return make


def _root_disk() -> str:
    src = subprocess.run(["findmnt", "-n", "-o", "SOURCE", "/"], capture_output=True, text=True).stdout.strip()
    return src if src.startswith("/dev/") else ""


ROOT_DISK = _root_disk()
A = "{a}"
T = ("-d", "{w}/t.img")  # a target image that does not exist: it must not appear
BIG = ("-d", "{w}/big.img")  # an existing, empty, 200 MiB sparse image
RESTORE = ("restore", "-a", A)
SCRIPT = text("script", "#!/bin/sh\n")
BUNDLE = text("bundle", "vim\n")
LAYOUT = ("-i", "{w}/layout.json")
BAD_NAME = "names LVM refuses"
CAP = ("capture", "--mount", "/", "-o")  # refused before / is probed

# fmt: off
CASES = [
    # the command line itself (argparse)
    Case("no-command", (), 2, ("arguments are required", "COMMAND")),
    Case("unknown-command", ("bogus",), 2, ("invalid choice", "bogus")),
    Case("restore-without-target", RESTORE, 2, ("required", "-d")),
    Case("P-4", (*RESTORE, *T, "-P", "4"), 2, ("-P", "invalid choice")),
    Case("P-13", ("copy", *T, "-P13"), 2, ("-P", "invalid choice")),
    Case("resize-unknown", (*RESTORE, *T, "--resize", "huge"), 2, ("--resize", "invalid choice")),
    Case("lv-name-limit-not-a-number", (*RESTORE, *T, "--lv-name-limit", "x"), 2, ("--lv-name-limit", "invalid int")),
    # AIX's flag rules (tests/test_phase_flags.py has them for both commands; here with the full checks)
    Case("w-needs-l", ("copy", *T, "-w", "vim"), 2, ("-w needs -l DIR",)),
    Case("b-needs-l", (*RESTORE, *T, "-b", "{w}/bundle"), 2, ("-b needs -l DIR",), (BUNDLE,)),
    Case("F-needs-l", ("copy", *T, "-F", "update_all"), 2, ("-F needs -l DIR",)),
    Case("f-needs-l", (*RESTORE, *T, "-f", "{w}/bundle"), 2, ("-f needs -l DIR",), (BUNDLE,)),
    Case("I-needs-l", ("copy", *T, "-I=--force-confnew"), 2, ("-I needs -l DIR",)),
    Case("c-needs-O", (*RESTORE, *T, "-c", "ttyS0"), 2, ("-c needs -O",)),
    Case("B-excludes-r", ("copy", *T, "-B", "-r"), 2, ("-B and -r exclude each other",)),
    Case("phase2-flag-with-P1", (*RESTORE, *T, "-P1", "-x", "{w}/script"), 2, ("-x", "Phase 2", "-P1"), (SCRIPT,)),
    Case("phase3-flag-with-P12", ("copy", *T, "-P12", "-g"), 2, ("-g", "Phase 3", "-P12")),
    Case("R-not-full-path", ("copy", *T, "-R", "resolv.conf"), 2, ("-R resolv.conf", "full path")),
    Case("i-not-full-path", (*RESTORE, *T, "-i", "layout.json"), 2, ("-i layout.json", "full path")),
    Case("l-not-full-path", ("copy", *T, "-l", "pkgs"), 2, ("-l pkgs", "full path")),
    Case("e-not-full-path", (*CAP, "{w}/x.mksysb", "-e", "x.list"), 2, ("x.list", "full path")),
    Case("copy-e-not-full-path", ("copy", *T, "-e", "x.list"), 2, ("-e x.list", "full path")),
    Case("l-not-a-directory", (*RESTORE, *T, "-l", "{w}/bundle"), 2, ("-l {w}/bundle", "not a directory"), (BUNDLE,)),
    Case("R-missing", ("copy", *T, "-R", "{w}/resolv.conf"), 2, ("-R {w}/resolv.conf", "No such file")),
    Case("s-not-executable", (*RESTORE, *T, "-s", "{w}/script"), 2, ("-s {w}/script", "must be executable"), (SCRIPT,)),
    Case("s-a-directory", ("copy", *T, "-s", "{w}/d"), 2, ("-s {w}/d", "not a regular file"), (directory("d"),)),
    Case("s-missing", (*RESTORE, *T, "-s", "{w}/none.sh"), 2, ("-s {w}/none.sh", "No such file")),
    Case("x-missing", ("copy", *T, "-x", "{w}/none.sh"), 2, ("-x {w}/none.sh", "No such file")),
    Case("x-a-directory", (*RESTORE, *T, "-x", "{w}/d"), 2, ("-x {w}/d", "not a regular file"), (directory("d"),)),
    Case("r-onto-an-image", (*RESTORE, *T, "-r"), 2, ("-r", "is an image")),
    Case("dry-run-without-phase1", (*RESTORE, *T, "-P23", "--dry-run"), 2, ("--dry-run plans Phase 1",)),
    Case("P23-without-phase1", (*RESTORE, *T, "-P23"), 1, ("no Phase 1 recorded",)),
    Case("copy-phase1-options-with-P23", ("copy", *T, "-P23", "--source", "{w}/x.qcow2"), 2, ("belong to Phase 1",)),
    # capture: output, exclude lists, sources
    Case("capture-o-missing-dir", (*CAP, "{w}/no/x.mksysb"), 2, ("{w}/no", "does not exist")),
    Case("capture-o-a-directory", (*CAP, "{w}"), 2, ("-o {w}", "is a directory")),
    Case("capture-e-missing", (*CAP, "{w}/x.mksysb", "-e", "{w}/none.list"), 2,
         ("{w}/none.list", "no such file")),
    Case("capture-e-unmatched-brace", (*CAP, "{w}/x.mksysb", "-e", "{w}/x.list"), 2,
         ("grep rejects", "Unmatched \\{"), (text("x.list", "^./tmp/\na\\{1\n"),)),
    Case("capture-e-open-bracket", (*CAP, "{w}/x.mksysb", "-e", "{w}/x.list"), 2,
         ("grep rejects", "{w}/x.list"), (text("x.list", "[\n"),)),
    Case("capture-e-empty-list-excludes-nothing", ("capture", "--mount", "{w}/mnt", "-o", "{w}/x.mksysb", "-e",
         "{w}/x.list", "--no-progress"), 0, (), (text("x.list", ""), loop(), mounted_ro), ("x.mksysb",)),
    Case("capture-missing-image", ("capture", "{w}/none.qcow2", "-o", "{w}/x.mksysb"), 2, ("{w}/none.qcow2",)),
    Case("capture-image-and-mount", ("capture", "{w}/big.img", "--mount", "/", "-o", "{w}/x.mksysb"), 2,
         ("either a SOURCE image or --mount",), (sparse("big.img", "200M"),)),
    Case("capture-mount-not-a-mount-point", ("capture", "--mount", "{w}", "-o", "{w}/x.mksysb"), 2,
         ("--mount {w}", "not a mount point")),
    Case("capture-mount-proc", ("capture", "--mount", "/proc", "-o", "{w}/x.mksysb"), 2, ("proc", "cannot be")),
    Case("capture-json-to-stdout", (*CAP, "-", "--json"), 2, ("--json and -o -",)),
    Case("capture-level-0", (*CAP, "{w}/x.mksysb", "--level", "0"), 2, ("--level 0", "1 to 19")),
    Case("capture-level-20", (*CAP, "{w}/x.mksysb", "--level", "20"), 2, ("--level 20", "1 to 19")),
    Case("copy-e-unmatched-brace", ("copy", "--source", "{w}/big.img", "-d", "{w}/t.img", "-e", "{w}/x.list"), 2,
         ("grep rejects", "Unmatched \\{"), (text("x.list", "a\\{1\n"), sparse("big.img", "200M"))),
    Case("copy-e-missing", ("copy", "--source", "{w}/big.img", "-d", "{w}/t.img", "-e", "{w}/none.list"), 2,
         ("{w}/none.list", "no such file"), (sparse("big.img", "200M"),)),
    Case("copy-source-missing", ("copy", "--source", "{w}/none.qcow2", *T), 2, ("--source", "no such image")),
    Case("capture-source-device-mounted", ("capture", "{dev}", "-o", "{w}/x.mksysb"), 2, ("{dev}", "is mounted"),
         (loop(), mounted_ro)),
    Case("copy-source-device-mounted", ("copy", "--source", "{dev}", *T), 2, ("{dev}", "is mounted"),
         (loop(), mounted_ro)),
    Case("copy-archive-in-missing-dir", ("copy", "--source", "{w}/big.img", *T, "--archive", "{w}/no/x.mksysb"), 1,
         ("--archive {w}/no/x.mksysb", "cannot write"), (sparse("big.img", "200M"),)),
    Case("copy-archive-exists", ("copy", *T, "--archive", "{w}/kept.mksysb"), 2, ("exists already",),
         (text("kept.mksysb", "x"),)),
    Case("copy-onto-its-source", ("copy", "--source", "{w}/big.img", "-d", "{w}/big.img"), 2,
         ("{w}/big.img", "source of the copy"), (sparse("big.img", "200M"),)),
    # archives: missing, not archives, damaged, newer
    Case("archive-missing", (*RESTORE[:2], "{w}/none.mksysb", *T), 1, ("{w}/none.mksysb", "no such archive")),
    Case("archive-not-an-archive", (*RESTORE[:2], "{w}/big.img", *T), 1, ("not an imgclone archive",),
         (ext4_image("big.img"),)),
    Case("archive-plain-tar", (*RESTORE[:2], "{w}/plain.tar", *T), 1, ("not an imgclone archive", "manifest.json"),
         (plain_tar,)),
    Case("archive-gzip", ("archive", "list", "{w}/x.gz"), 1, ("not an imgclone archive",),
         (derived_archive("x.gz", lambda b: __import__("gzip").compress(b[:4096])),)),
    Case("archive-empty-file", ("archive", "show", "{w}/empty"), 1, ("not an imgclone archive", "empty"),
         (text("empty", ""),)),
    Case("archive-a-directory", ("archive", "show", "{w}"), 1, ("{w}", "is a directory")),
    Case("restore-archive-a-directory", (*RESTORE[:2], "{w}/d", *T), 1, ("{w}/d", "is a directory"), (directory("d"),)),
    Case("archive-truncated-in-manifest", (*RESTORE[:2], "{w}/cut.mksysb", *T), 1, ("manifest.json", "truncated"),
         (derived_archive("cut.mksysb", lambda b: b[:1500]),)),
    Case("archive-truncated-in-stream", (*RESTORE[:2], "{w}/cut.mksysb", *T), 1, ("truncated", "streams/fs-"),
         (derived_archive("cut.mksysb", lambda b: b[: len(b) // 2]),)),
    Case("archive-truncated-dry-run", (*RESTORE[:2], "{w}/cut.mksysb", *T, "--dry-run"), 1, ("truncated",),
         (derived_archive("cut.mksysb", lambda b: b[: len(b) // 2]),)),
    Case("verify-truncated-in-stream", ("archive", "verify", "{w}/cut.mksysb"), 1, ("truncated", "streams/fs-"),
         (derived_archive("cut.mksysb", lambda b: b[: len(b) // 2]),)),
    Case("archive-newer-format", (*RESTORE[:2], "{w}/v2.mksysb", *T), 1, ("format version", "newer", "upgrade"),
         (newer_format,)),
    Case("show-newer-format", ("archive", "show", "{w}/v2.mksysb"), 1, ("format version", "newer"), (newer_format,)),
    # targets
    Case("target-dir-missing", (*RESTORE, "-d", "{w}/no/t.img"), 2, ("{w}/no", "does not exist")),
    Case("target-a-directory", (*RESTORE, "-d", "{w}"), 2, ("-d {w}", "neither a disk image")),
    Case("target-dev-null", (*RESTORE, "-d", "/dev/null"), 2, ("/dev/null", "not a block device")),
    Case("target-dev-missing", (*RESTORE, "-d", "/dev/imgclone-none"), 2, ("not a block device",)),
    Case("target-twice", (*RESTORE, "-d", "{w}/big.img {w}/big.img"), 2, ("given twice",), (sparse("big.img", "9M"),)),
    Case("target-vmdk", (*RESTORE, "-d", "{w}/x.vmdk"), 2, ("vmdk", "not supported"),
         (lambda env: sh("qemu-img", "create", "-q", "-f", "vmdk", str(env.w / "x.vmdk"), "100M"),)),
    Case("target-is-the-archive", ("restore", "-a", "{w}/copy.mksysb", "-d", "{w}/copy.mksysb"), 2,
         ("is the archive",), (derived_archive("copy.mksysb", lambda b: b),)),
    Case("target-raw-image-with-a-filesystem", (*RESTORE, "-d", "{w}/big.img"), 2, ("holds a ext4 filesystem",),
         (ext4_image("big.img"),)),
    Case("target-image-attached-to-a-loop", (*RESTORE, "-d", "{w}/disk.img", "--resize", "fit"), 2,
         ("{w}/disk.img", "loop device"), (loop(),)),
    Case("target-image-of-a-mounted-loop", (*RESTORE, "-d", "{w}/disk.img", "--force"), 2,
         ("{w}/disk.img", "loop device"), (loop(size="200M"), mounted_ro)),
    Case("target-mounted", (*RESTORE, "-d", "{dev}"), 2, ("{dev}", "is mounted"), (loop(), mounted_ro)),
    Case("target-mounted-force", (*RESTORE, "-d", "{dev}", "--force", "--dry-run"), 2, ("{dev}", "is mounted"),
         (loop(size="200M"), mounted_ro)),
    Case("target-partitioned", (*RESTORE, "-d", "{dev}"), 2, ("{dev}", "gpt partition table"), (loop(), gpt_table)),
    Case("target-lvm-pv", (*RESTORE, "-d", "{dev}"), 2, ("{dev}", "LVM physical volume"), (loop(), pv)),
    Case("target-holds-a-vg", (*RESTORE, "-d", "{dev}"), 2, ("{dev}", "LVM physical volume"), (loop(), pv, vg)),
    Case("target-running-root", (*RESTORE, "-d", ROOT_DISK or "/"), 2, (ROOT_DISK, "running root")),
    Case("target-running-root-force", (*RESTORE, "-d", ROOT_DISK or "/", "--force"), 2, ("running root",)),
    # sizes and the plan
    Case("target-too-small", (*RESTORE, "-d", "{w}/s.img"), 2, ("{w}/s.img", "too small"), (sparse("s.img", "9M"),)),
    Case("target-too-small-S", (*RESTORE, "-d", "{w}/s.img", "-S"), 2, ("too small",), (sparse("s.img", "9M"),)),
    Case("target-too-small-fit-S", (*RESTORE, "-d", "{w}/s.img", "-S", "--resize", "fit"), 2, ("too small",),
         (sparse("s.img", "4M"),)),
    Case("data-does-not-fit", (*RESTORE, *BIG, *LAYOUT, "--resize", "exact"), 2, ("needs", "of data", "-S"),
         (sparse("big.img", "200M"), layout("layout.json", lvm_layout(lv_size=4 << 20)))),
    Case("data-does-not-fit-S-warns", (*RESTORE, *BIG, *LAYOUT, "--resize", "exact", "-S", "--dry-run"), 0,
         ("warning", "space check skipped (-S)"), (sparse("big.img", "200M"),
         layout("layout.json", lvm_layout(lv_size=4 << 20)))),
    Case("size-not-a-size", (*RESTORE, *T, "--size", "10X"), 2, ("--size 10X", "not a size")),
    Case("size-too-small", (*RESTORE, *T, "--size", "1K"), 2, ("--size", "at least 2 MiB")),
    Case("convert-unknown-type", (*RESTORE, *T, "--convert", "ext4=ntfs"), 2, ("--convert ext4=ntfs",)),
    Case("convert-to-itself", (*RESTORE, *T, "--convert", "ext4=ext4"), 2, ("--convert ext4=ext4",)),
    Case("convert-refused", (*RESTORE, *T, "--convert", "ext4=ext2"), 2, ("--convert ext4=ext2", "refused")),
    Case("lv-name-limit-too-small", (*RESTORE, *T, "--lv-name-limit", "3"), 2, ("--lv-name-limit 3",)),
    Case("lv-name-limit-too-big", (*RESTORE, *T, "--lv-name-limit", "500"), 2, ("--lv-name-limit 500",)),
    # -i layout files
    Case("i-missing", (*RESTORE, *T, *LAYOUT), 2, ("-i {w}/layout.json", "No such file")),
    Case("i-a-directory", (*RESTORE, *T, "-i", "{w}"), 2, ("-i {w}", "directory")),
    Case("i-bad-json", (*RESTORE, *T, *LAYOUT), 2, ("not valid JSON",), (text("layout.json", '{"disks": ['),)),
    Case("i-not-an-object", (*RESTORE, *T, *LAYOUT), 2, ("expected a JSON object",), (text("layout.json", "[]"),)),
    Case("i-unknown-version", (*RESTORE, *T, *LAYOUT), 2, ("unsupported version 99",),
         (layout("layout.json", top("version", 99)),)),
    Case("i-unknown-field", (*RESTORE, *T, *LAYOUT), 2, ("unknown field", "bogus"),
         (layout("layout.json", fs_field("bogus", 1)),)),
    Case("i-dangling-fs-device", (*RESTORE, *T, *LAYOUT), 2, ("device nope does not exist",),
         (layout("layout.json", fs_field("device", "nope")),)),
    Case("i-dangling-lv-vg", (*RESTORE, *T, *LAYOUT), 2, ("volume group vg-x does not exist",),
         (layout("layout.json", lvm_layout(lv_vg="vg-x")),)),
    Case("i-dangling-pv", (*RESTORE, *T, *LAYOUT), 2, ("physical volume part-9 does not exist",),
         (layout("layout.json", lvm_layout(pv="part-9")),)),
    Case("i-partition-beyond-disk", (*RESTORE, *BIG, *LAYOUT), 2, ("part-1", "beyond the end of disk"),
         (sparse("big.img", "200M"), layout("layout.json", lvm_layout(part_size=600 << 20)))),
    Case("i-type-changed", (*RESTORE, *T, *LAYOUT), 2, ("type ext4 in the archive, xfs here",),
         (layout("layout.json", fs_field("type", "xfs")),)),
    Case("i-filesystem-missing", (*RESTORE, *T, *LAYOUT), 2, ("of the archive is missing",),
         (layout("layout.json", top("filesystems", [])),)),
    Case("i-lv-name-space", (*RESTORE, *BIG, *LAYOUT), 2, (BAD_NAME, "rootvg/bad name"),
         (sparse("big.img", "200M"), layout("layout.json", lvm_layout(lv="bad name")))),
    Case("i-lv-name-dash", (*RESTORE, *BIG, *LAYOUT), 2, (BAD_NAME, "starts with '-'"),
         (sparse("big.img", "200M"), layout("layout.json", lvm_layout(lv="-data")))),
    Case("i-lv-name-too-long", (*RESTORE, *BIG, *LAYOUT), 2, ("too long", "130 > 123"),
         (sparse("big.img", "200M"), layout("layout.json", lvm_layout(lv="x" * 130)))),
    Case("i-lv-name-too-long-for-aix", (*RESTORE, *BIG, *LAYOUT, "--lv-name-limit", "15"), 2, ("too long", "17 > 11"),
         (sparse("big.img", "200M"), layout("layout.json", lvm_layout(lv="averyverylongname")))),
    Case("i-vg-name-invalid", (*RESTORE, *BIG, *LAYOUT), 2, (BAD_NAME, "volume group -vg"),
         (sparse("big.img", "200M"), layout("layout.json", lvm_layout(vg="-vg")))),
    Case("i-subvolume-not-on-btrfs", (*RESTORE, *T, *LAYOUT), 2, ("Subvolume sv-1", "is ext4, not btrfs"),
         (layout("layout.json", subvolume_on_ext4),)),
    Case("i-thin-lv-without-pool", (*RESTORE, *BIG, *LAYOUT), 2, ("LogicalVolume lv-1", "needs a thin pool"),
         (sparse("big.img", "200M"), layout("layout.json", thin_without_pool))),
    # boot-test and alt
    Case("boot-test-missing-image", ("boot-test", "{w}/none.qcow2"), 2, ("{w}/none.qcow2", "no such")),
    Case("boot-test-missing-disk", ("boot-test", "{w}/big.img", "--disk", "{w}/none.img"), 2, ("{w}/none.img",),
         (sparse("big.img", "200M"),)),
    Case("boot-test-keep-log-missing-dir", ("boot-test", "{w}/big.img", "--keep-log", "{w}/no/log"), 2,
         ("--keep-log",), (sparse("big.img", "200M"),)),
    Case("alt-cleanup-not-an-alternate", ("alt", "cleanup", *BIG), 1, ("no alternate recorded",),
         (sparse("big.img", "200M"),)),
    Case("alt-cleanup-wipe-not-an-alternate", ("alt", "cleanup", *BIG, "--wipe"), 1, ("no alternate recorded",),
         (sparse("big.img", "200M"),)),
    Case("alt-wake-not-an-alternate", ("alt", "wake", *BIG), 1, ("no alternate recorded",),
         (sparse("big.img", "200M"),)),
    Case("alt-sleep-not-an-alternate", ("alt", "sleep", *BIG), 1, ("no alternate recorded",),
         (sparse("big.img", "200M"),)),
]
# fmt: on


# -- the digest of everything a case may touch ---------------------------------------------------------------------


BLOCK = 64 << 10


def digest(path: Path) -> str:
    """sha256 of a file's size and of its non-zero 64 KiB blocks with their offsets: equal exactly when the contents
    are, without reading a sparse image's holes (which read as zeros; SEEK_DATA skips them)."""
    h = hashlib.sha256()
    zero = bytes(BLOCK)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h.update(str(size).encode())
        done = 0  # every block before this one is hashed (or a hole): each block once, in order
        while done < size:
            try:
                data = os.lseek(f.fileno(), done, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = os.lseek(f.fileno(), data, os.SEEK_HOLE)
            start = max(done, data // BLOCK * BLOCK)
            f.seek(start)
            for at in range(start, end, BLOCK):
                block = f.read(BLOCK)
                if block != zero[: len(block)]:
                    h.update(f"@{at}:".encode() + block)
            done = -(-end // BLOCK) * BLOCK
    return h.hexdigest()


def snapshot(w: Path, extra: list[Path]) -> dict[str, str]:
    """Every entry under w (files by digest, directories and others by kind) and the extra files."""
    out = {}
    for p in sorted(w.rglob("*")):
        if (w / "mnt") in p.parents:
            continue  # a read-only mounted filesystem: its backing file is digested
        out[str(p)] = digest(p) if p.is_file() and not p.is_symlink() else "dir" if p.is_dir() else "other"
    for p in extra:
        out[str(p)] = digest(p)
    return out


def root_disk_head() -> str:
    """The first KiB of the disk of / (where a restore writes the partition table first; the rest changes all the
    time)."""
    if not ROOT_DISK:
        return ""
    try:
        with open(ROOT_DISK, "rb") as f:
            return hashlib.sha256(f.read(1024)).hexdigest()
    except PermissionError:  # a container may not open it at all (nor, then, write it)
        return "not openable"


@pytest.fixture(scope="module")
def source_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One archive for the module, made once per run (conftest's shared(): the cases run on every xdist worker):
    6 MiB of random data on a loop-mounted ext4, captured with --mount."""
    return shared(tmp_path_factory, "badinput-archive", _make_source_archive)


def _make_source_archive(work: Path) -> Path:
    backing, mnt = work / "fs.img", work / "mnt"
    sh("truncate", "-s", "64M", str(backing))
    sh("mkfs.ext4", "-q", "-F", str(backing))
    mnt.mkdir()
    dev = sh("losetup", "--find", "--show", str(backing)).strip()
    try:
        sh("mount", dev, str(mnt))
        try:
            (mnt / "blob").write_bytes(os.urandom(6 << 20))
            (mnt / "a").write_text("a\n")
            out = work / "a.mksysb"
            r = subprocess.run([sys.executable, "-m", "imgclone", "capture", "--mount", str(mnt), "-o", str(out),
                                "--no-progress"], capture_output=True, text=True, check=False)  # fmt: skip
            assert r.returncode == 0, r.stderr
        finally:
            subprocess.run(["umount", str(mnt)], check=False)
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
    return out


def _fill(s: str, subs: dict[str, str]) -> str:
    for k, v in subs.items():
        s = s.replace("{" + k + "}", v)
    return s


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input(case: Case, source_archive: Path, tmp_path: Path) -> None:
    if case.id.startswith("target-running-root") and not ROOT_DISK:
        pytest.skip("/ is not on a block device here")
    w = tmp_path / "w"
    w.mkdir()
    (w / "tmp").mkdir()
    with ExitStack() as stack:
        env = Env(w, source_archive, stack, {"w": str(w), "a": str(source_archive)})
        for step in case.setup:
            step(env)
        argv = [_fill(a, env.subs) for a in case.argv]
        words = [_fill(x, env.subs) for x in case.words]
        before, head = snapshot(w, [source_archive]), root_disk_head()
        r = subprocess.run(
            [sys.executable, "-m", "imgclone", *argv], cwd=w, capture_output=True, text=True, check=False,
            env=dict(os.environ, IMGCLONE_STATE_DIR=str(w / "state"), TMPDIR=str(w / "tmp"), PYTHONPATH=str(ROOT),
                     LIBGUESTFS_CACHEDIR="/var/tmp"),
        )  # fmt: skip
        after = snapshot(w, [source_archive])
        lines = r.stderr.splitlines()
        assert "Traceback" not in r.stderr, r.stderr
        assert r.returncode == case.rc, r.stderr
        if words:
            assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{r.stderr}"
            assert all(x in lines[0] for x in words), lines[0]
        else:
            assert r.stderr == ""
        made = {str(w / c) for c in case.creates}
        assert case.rc == 0 or not made
        assert {k: v for k, v in after.items() if k not in made} == before, "bad input wrote something"
        assert all(k in after for k in made), f"{case.creates} not created"
        assert root_disk_head() == head
        assert not (w / "state").exists()
        shutil.rmtree(w / "tmp")
