"""AIX's flag rules for copy and restore: usage errors before anything runs (exit 2, one line)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from imgclone.cli.parser import build_parser
from imgclone.cli.rules import customize_options

Run = Callable[..., subprocess.CompletedProcess[bytes]]
T = ["-d", "{tmp}/t.img"]


@pytest.mark.parametrize("command", ["copy", "restore"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*T, "-w", "vim"], "-w needs -l DIR"),
        ([*T, "-b", "{tmp}/bundle"], "-b needs -l DIR"),
        ([*T, "-F", "update_all"], "-F needs -l DIR"),
        ([*T, "-f", "{tmp}/bundle"], "-f needs -l DIR"),
        ([*T, "-I=--force-confnew"], "-I needs -l DIR"),
        ([*T, "-c", "ttyS0"], "-c needs -O"),
        ([*T, "-B", "-r"], "-B and -r exclude each other"),
        ([*T, "-P", "4"], "invalid choice"),
        ([*T, "-P", "13"], "invalid choice"),
        ([*T, "-P1", "-x", "{tmp}/script"], "-x: options of Phase 2, which -P1 does not run"),
        ([*T, "-P12", "-g"], "-g: options of Phase 3, which -P12 does not run"),
        ([*T, "-P1", "-B"], "-B: options of Phase 3"),
        ([*T, "-R", "resolv.conf"], "-R resolv.conf: must be a full path name"),
        ([*T, "-i", "layout.json"], "-i layout.json: must be a full path name"),
        ([*T, "-l", "pkgs"], "-l pkgs: must be a full path name"),
        ([*T, "-l", "{tmp}/nodir"], "-l {tmp}/nodir: not a directory"),
        ([*T, "-R", "{tmp}/missing"], "-R {tmp}/missing: No such file or directory"),
        ([*T, "-s", "{tmp}/script"], "-s {tmp}/script: must be executable"),
        ([*T, "-s", "{tmp}"], "-s {tmp}: not a regular file"),
        ([*T, "-x", "{tmp}/missing"], "-x {tmp}/missing: No such file or directory"),
        ([*T, "-r"], "-r: {tmp}/t.img is an image, not a disk of this host"),
        ([*T, "-P23", "--dry-run"], "--dry-run plans Phase 1"),
        ([*T, "-P23"], "no Phase 1 recorded for -d {tmp}/t.img"),
    ],
)
def test_flag_rules(imgclone: Run, tmp_path: Path, command: str, args: list[str], message: str) -> None:
    (tmp_path / "script").write_text("#!/bin/sh\n")
    (tmp_path / "bundle").write_text("vim\n")
    extra = ["-a", str(tmp_path / "archive")] if command == "restore" else []
    before = sorted(tmp_path.rglob("*"))
    env = {"IMGCLONE_STATE_DIR": str(tmp_path / "state")}
    r = imgclone(command, *extra, *[a.replace("{tmp}", str(tmp_path)) for a in args], env=env)
    err = r.stderr.decode()
    assert r.returncode == (1 if "no Phase 1" in message else 2), err
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert "Traceback" not in err and len([line for line in err.splitlines() if "error" in line]) == 1, err
    assert sorted(tmp_path.rglob("*")) == before, "bad input wrote something"


def test_copy_phase1_options_refused_without_phase1(imgclone: Run, tmp_path: Path) -> None:
    r = imgclone("copy", "-d", str(tmp_path / "t.img"), "-P23", "--source", "/x.qcow2")
    assert r.returncode == 2
    assert "belong to Phase 1, which -P23 does not run" in r.stderr.decode()


def test_copy_refuses_existing_archive_and_missing_source(imgclone: Run, tmp_path: Path) -> None:
    (tmp_path / "kept.mksysb").write_text("x")
    r = imgclone("copy", "-d", str(tmp_path / "t.img"), "--archive", str(tmp_path / "kept.mksysb"))
    assert r.returncode == 2 and "exists already" in r.stderr.decode()
    r = imgclone("copy", "-d", str(tmp_path / "t.img"), "--source", str(tmp_path / "none.qcow2"))
    assert r.returncode == 2 and "no such image or device" in r.stderr.decode()


def test_phase2_flags_become_options(tmp_path: Path) -> None:
    (tmp_path / "bundle").write_text("# a bundle\nvim curl\nupdate_all\n")
    (tmp_path / "fixes").write_text("openssl\n")
    args = build_parser().parse_args(
        ["copy", "-d", "t.img", "-l", str(tmp_path), "-w", "htop tree", "-w", "jq", "-b", str(tmp_path / "bundle"),
         "-F", "libc6", "-f", str(tmp_path / "fixes"), "-I=--force-confnew --force-overwrite", "-O", "-c", "ttyS0",
         "-n", "--alt-inst", "rel"]
    )  # fmt: skip
    opts = customize_options(args)
    assert opts.packages is not None
    assert opts.packages.install == ("htop", "tree", "jq", "vim", "curl")
    assert opts.packages.fixes == ("libc6", "openssl") and opts.packages.update_all
    assert opts.packages.flags == ("--force-confnew", "--force-overwrite")
    assert opts.device_reset and opts.console == "ttyS0" and opts.managed_client
    assert opts.alt_inst.startswith("/") and opts.alt_inst.endswith("/rel")
    assert opts.requested


def test_no_phase2_flags_request_nothing() -> None:
    args = build_parser().parse_args(["restore", "-a", "/a", "-d", "t.img"])
    assert not customize_options(args).requested


def test_alt_disk_mksysb_spelling() -> None:
    from imgclone.cli.aix import mksysb_argv

    assert mksysb_argv(["-m", "/b/h.mksysb", "-d", "hdisk1", "-P1"]) == ["-a", "/b/h.mksysb", "-d", "hdisk1", "-P1"]
    assert mksysb_argv(["-m/b/h.mksysb", "-d", "x"]) == ["-a/b/h.mksysb", "-d", "x"]


def test_alt_disk_copy_is_copy(tmp_path: Path) -> None:
    alias = subprocess.run([str(Path(sys.executable).parent / "alt_disk_copy"), "-d", str(tmp_path / "t.img"),
                            "-B", "-r"], capture_output=True, text=True, check=False)  # fmt: skip
    assert alias.returncode == 2 and "-B and -r exclude each other" in alias.stderr


def test_reboot_refuses_a_loop_device(tmp_path: Path) -> None:
    """-r with a loop device (how tests and docs stand in for a disk) would reboot the host into nothing."""
    from imgclone.cli.rules import check_reboot
    from imgclone.errors import UsageError

    args = build_parser().parse_args(["restore", "-a", "/a", "-d", "/dev/loop0", "-r"])
    link = tmp_path / "disk"
    link.symlink_to("/dev/loop0")
    for target in ("/dev/loop0", str(link)):
        if not os.path.exists("/dev/loop0"):
            pytest.fail("/dev/loop0 is missing: tests need loop devices (make setup)")
        with pytest.raises(UsageError, match=r"-r: .* is a loop device .*not a disk firmware can boot"):
            check_reboot(args, (target,))
