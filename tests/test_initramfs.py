"""Phase 3's initramfs: the clone's update-initramfs on this host's CPU (a chroot of a copy of the clone, in a mount
namespace of its own) when the host runs the clone's binaries, else in the appliance; what it wrote goes back."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

from imgclone.errors import ImgcloneError, UsageError
from imgclone.host.run import Result
from imgclone.phases import initramfs
from tests.fakes import FakeGuest, FakeRunner

ELF = {"x86_64": b"\x3e\x00", "aarch64": b"\xb7\x00"}


def sh(machine: str) -> bytes:
    """The first bytes of an ELF /bin/sh built for machine."""
    return b"\x7fELF\x02\x01\x01" + b"\0" * 11 + ELF[machine] + b"\0" * 10


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMGCLONE_WORKDIR", str(tmp_path))
    monkeypatch.delenv(initramfs.ENV, raising=False)
    return tmp_path


def test_where_follows_the_clones_machine_and_the_variable(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = "aarch64" if platform.machine() != "aarch64" else "x86_64"
    here = FakeGuest(files={"/bin/sh": sh(platform.machine())}) if platform.machine() in ELF else None
    if here is not None:
        assert initramfs.where(here) == ("host" if os.geteuid() == 0 else "appliance")
    assert initramfs.where(FakeGuest(files={"/bin/sh": sh(other)})) == "appliance", "another CPU: the appliance"
    assert initramfs.where(FakeGuest()) == "appliance", "no /bin/sh to tell: the appliance"
    assert initramfs.where(FakeGuest(files={"/bin/sh": b"#!/bin/busybox\n"})) == "appliance"
    monkeypatch.setenv(initramfs.ENV, "appliance")
    assert initramfs.where(FakeGuest(files={"/bin/sh": sh(other)})) == "appliance"
    monkeypatch.setenv(initramfs.ENV, "host")
    assert initramfs.where(FakeGuest()) == "host", "asked for: the host, whatever the clone"
    monkeypatch.setenv(initramfs.ENV, "elsewhere")
    with pytest.raises(UsageError, match="IMGCLONE_INITRAMFS=elsewhere: expected host, appliance or auto"):
        initramfs.where(FakeGuest())


def test_in_the_appliance_the_clones_command_runs_there(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(initramfs.ENV, "appliance")
    g = FakeGuest()
    assert initramfs.regenerate(g, ["6.1.0-28-amd64", "6.1.0-27-amd64"], FakeRunner()) == "appliance"
    assert g.named("command") == [(["update-initramfs", "-u", "-k", "6.1.0-28-amd64"],),
                                  (["update-initramfs", "-u", "-k", "6.1.0-27-amd64"],)]  # fmt: skip
    g = FakeGuest()
    initramfs.regenerate(g, None, FakeRunner())
    assert g.named("command") == [(["update-initramfs", "-u", "-k", "all"],)]


def test_on_the_host_a_chroot_of_a_copy_and_only_what_it_wrote_goes_back(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(initramfs.ENV, "host")
    g = FakeGuest()
    roots: list[Path] = []

    def extract(argv: list[str], _input: bytes | None) -> Result:
        """What tar would leave: two kernels' initramfs, update-initramfs's checksum of one."""
        root = Path(argv[argv.index("--directory") + 1])
        roots.append(root)
        (root / "boot").mkdir()
        for v in ("6.1.0-28-amd64", "6.1.0-27-amd64"):
            (root / "boot" / f"initrd.img-{v}").write_bytes(b"old")
            os.utime(root / "boot" / f"initrd.img-{v}", (1, 1))
        (root / "var/lib/initramfs-tools").mkdir(parents=True)
        return Result(argv, 0, b"", "")

    def update(argv: list[str], _input: bytes | None) -> Result:
        root = Path(argv[argv.index("sh", 6) + 1])
        assert argv[-2:] == ["-k", "6.1.0-28-amd64"]
        (root / "boot/initrd.img-6.1.0-28-amd64").write_bytes(b"new")
        (root / "var/lib/initramfs-tools/6.1.0-28-amd64").write_text("sha1\n")
        return Result(argv, 0, b"", "")

    runner = FakeRunner({("tar", "--extract"): extract, ("unshare",): update})
    assert initramfs.regenerate(g, ["6.1.0-28-amd64"], runner) == "host"
    (tar_out,) = g.recorded("tar_out")
    assert tar_out[1] == "/" and "./home/*" in g.calls[0].kwargs["excludes"], g.calls[0]
    unshare = runner.calls[1]
    assert unshare[:5] == ["unshare", "--mount", "--propagation", "private", "--"], unshare
    assert 'exec chroot "$root" update-initramfs -u "$@"' in unshare[7], "the clone's own tool, in a chroot"
    assert g.files["/boot/initrd.img-6.1.0-28-amd64"] == b"new"
    assert g.files["/var/lib/initramfs-tools/6.1.0-28-amd64"] == b"sha1\n"
    assert "/boot/initrd.img-6.1.0-27-amd64" not in g.files, "an initramfs it did not write stays as it is"
    assert not roots[0].exists() and list(workdir.iterdir()) == [], "the copy is removed"


def test_a_chroot_that_wrote_nothing_is_an_error(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(initramfs.ENV, "host")

    def extract(argv: list[str], _input: bytes | None) -> Result:
        (Path(argv[argv.index("--directory") + 1]) / "boot").mkdir()
        return Result(argv, 0, b"", "")

    runner = FakeRunner({("tar", "--extract"): extract, ("unshare",): ""})
    with pytest.raises(ImgcloneError, match="wrote no initramfs"):
        initramfs.regenerate(FakeGuest(), None, runner)
    assert list(workdir.iterdir()) == []


def test_a_copy_left_by_a_killed_run_is_removed(workdir: Path) -> None:
    dead = workdir / f"{initramfs.PREFIX}{2**22 + 7}-abc"  # no such process
    alive = workdir / f"{initramfs.PREFIX}{os.getpid()}-def"
    for d in (dead, alive):
        (d / "root").mkdir(parents=True)
    initramfs._remove_left_copies(workdir)
    assert not dead.exists() and alive.exists()
