"""The bootable fixtures (fixtures/build.py): the cache rules, the exact libguestfs calls of the disk
steps with a fake, the mmdebstrap command, and (integration) the real bios image's layout."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from fixtures import build, cache, rootfs
from fixtures.build import FIXTURES, fixture_path
from imgclone.guest.appliance import Appliance
from imgclone.guest.interface import Guest
from imgclone.model.layout import PartFlag
from imgclone.model.parttypes import GPT_TYPES
from tests.fakes import FakeGuest

MiB = 1024 * 1024


# -- the cache -------------------------------------------------------------------------------------
def test_cache_base_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMGCLONE_FIXTURES", str(tmp_path))
    assert cache.cache_base() == tmp_path
    path = cache.cached_file("bios", "qcow2", build.SOURCES)
    assert path.parent == tmp_path and re.fullmatch(r"bios-[0-9a-f]{12}\.qcow2", path.name)
    monkeypatch.delenv("IMGCLONE_FIXTURES")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_base() == tmp_path / "xdg" / "imgclone" / "fixtures"


def test_keys_cover_the_builder_sources() -> None:
    assert cache.source_key(["rootfs.py"]) != cache.source_key(build.SOURCES)
    assert cache.source_key(build.SOURCES) == cache.source_key(build.SOURCES)
    assert {"build.py", "rootfs.py"} <= set(build.SOURCES)


def test_build_once_is_atomic_and_removes_stale(tmp_path_factory: pytest.TempPathFactory,
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    tmp_path = tmp_path_factory.mktemp("cache")
    budget = tmp_path_factory.mktemp("budget") / "log"  # the suite's budget (tests/budget.py) counts each build
    monkeypatch.setenv("IMGCLONE_BUDGET_LOG", str(budget))
    stale = tmp_path / "bios-000000000000.qcow2"
    other = tmp_path / "rootfs-bios-000000000000.tar"
    in_use = tmp_path / "bios-111111111111.qcow2"  # another checkout's build, used a day ago
    stale.write_text("old")
    (tmp_path / "bios-000000000000.qcow2.lock").touch()
    other.write_text("tar")
    in_use.write_text("theirs")
    (tmp_path / "bios-111111111111.qcow2.lock").touch()
    day = 86400
    for p, age in ((stale, 8), (tmp_path / "bios-000000000000.qcow2.lock", 8), (other, 30), (in_use, 1)):
        os.utime(p, (time.time() - age * day,) * 2)
    built: list[Path] = []

    def make(p: Path) -> None:
        built.append(p)
        p.write_text("new")

    path = tmp_path / "bios-0123456789ab.qcow2"
    assert cache.build_once(path, make) == path
    assert built == [tmp_path / "bios-0123456789ab.qcow2.partial"]
    assert path.read_text() == "new" and other.exists()
    theirs = [in_use.name, in_use.name + ".lock"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + ".lock", *theirs, other.name]
    os.utime(path, (time.time() - 9 * day,) * 2)
    cache.build_once(path, make)
    assert len(built) == 1  # cached: not built again
    assert path.stat().st_mtime > time.time() - day  # and its use noted, so no other checkout's build removes it
    [line] = budget.read_text().splitlines()
    assert line.startswith("fixture\ttests/test_fixtures.py::test_build_once_is_atomic") and "\tbios " in line


def test_asking_for_a_cached_build_notes_its_use(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """fixture_path and rootfs_tarball ask cached_file and return a build that exists without build_once: the
    asking is the use."""
    monkeypatch.setenv("IMGCLONE_FIXTURES", str(tmp_path))
    path = cache.cached_file("bios", "qcow2", build.SOURCES)
    assert not path.exists()  # not made by asking
    path.write_text("built")
    os.utime(path, (time.time() - 9 * 86400,) * 2)
    assert cache.cached_file("bios", "qcow2", build.SOURCES) == path
    assert path.stat().st_mtime > time.time() - 86400


def test_build_once_failure_leaves_nothing(tmp_path: Path) -> None:
    def fail(p: Path) -> None:
        p.write_text("half")
        raise RuntimeError("boom")

    path = tmp_path / "ext3-0123456789ab.qcow2"
    with pytest.raises(RuntimeError):
        cache.build_once(path, fail)
    assert [p.name for p in tmp_path.iterdir()] == ["ext3-0123456789ab.qcow2.lock"]  # no image, no partial


# -- mmdebstrap ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("flavour", "grub"), [("bios", "grub-pc"), ("uefi", "grub-efi-amd64")])
def test_mmdebstrap_argv(flavour: str, grub: str, tmp_path: Path) -> None:
    argv = rootfs.mmdebstrap_argv(flavour, tmp_path / "out.tar", tmp_path)
    include = next(a for a in argv if a.startswith("--include=")).split("=", 1)[1].split(",")
    for pkg in ("linux-image-amd64", "lvm2", "xfsprogs", "e2fsprogs", "systemd-sysv", "udev", "initramfs-tools", grub):
        assert pkg in include
    assert "--dpkgopt=path-exclude=/usr/share/man/*" in argv and "--dpkgopt=path-exclude=/usr/share/locale/*" in argv
    assert argv[argv.index("bookworm") + 1] == str(tmp_path / "out.tar")
    sources = argv[argv.index("bookworm") + 2 :]
    assert all(s.startswith("deb http://deb.debian.org/") for s in sources)


def test_hooks() -> None:
    assert "MODULES=most" in rootfs.INITRAMFS_HOOK
    for text in ('GRUB_CMDLINE_LINUX="console=ttyS0,115200"', "imgclone-fixture", "^./var/tmp/", "passwd -d root"):
        assert text in rootfs.CUSTOMIZE_HOOK


# -- the disk steps, with a fake appliance -------------------------------------------------------
def _steps(name: str) -> list[tuple[Any, ...]]:
    """The calls of the disk steps (but the vfs_uuid questions, answered with a fixed UUID per device)."""
    g = FakeGuest({"vfs_uuid": lambda dev: f"uuid-of-{dev.rsplit('/', 1)[1]}"})
    spec = FIXTURES[name]
    for step in (build.partition_disk, build.create_lvm, build.make_filesystems, build.mount_filesystems,
                 build.write_fstab):  # fmt: skip
        step(g, spec)
    return [c for c in g.recorded() if c[0] != "vfs_uuid"]


def test_bios_steps() -> None:
    calls = _steps("bios")
    s = 2048
    assert calls[:5] == [
        ("part_init", "/dev/sda", "msdos"),
        ("part_add", "/dev/sda", "p", s, s + 256 * 2048 - 1),
        ("part_set_bootable", "/dev/sda", 1, True),
        ("part_add", "/dev/sda", "p", s + 256 * 2048, 3072 * 2048 - 1),
        ("part_set_mbr_id", "/dev/sda", 2, 0x8E),
    ]
    assert ("vgcreate", "rootvg", ["/dev/sda2"]) in calls
    assert [c[1] for c in calls if c[0] == "lvcreate"] == ["root", "var", "swap"]
    assert ("mkfs", "xfs", "/dev/rootvg/var", ("label", "var")) in calls
    assert ("mkswap", "/dev/rootvg/swap", ("label", "swap")) in calls
    mounts = [c[2] for c in calls if c[0] == "mount"]
    assert mounts == ["/", "/boot", "/var"]
    fstab = next(c[2] for c in calls if c[0] == "write").decode()
    assert "/dev/mapper/rootvg-root / ext4 errors=remount-ro 0 1" in fstab
    assert "UUID=uuid-of-sda1 /boot ext4 defaults 0 2" in fstab
    assert "/dev/mapper/rootvg-var /var xfs defaults 0 2" in fstab
    assert "/dev/mapper/rootvg-swap none swap sw 0 0" in fstab


def test_uefi_steps() -> None:
    calls = _steps("uefi")
    types = {c[2]: c[3] for c in calls if c[0] == "part_set_gpt_type"}
    assert types == {1: GPT_TYPES[PartFlag.BIOS_GRUB], 2: GPT_TYPES[PartFlag.ESP], 3: GPT_TYPES[PartFlag.LVM]}
    last = max(c[4] for c in calls if c[0] == "part_add")
    assert last == (3072 - 1) * 2048 - 1  # 1 MiB left for the backup GPT
    assert [c[2] for c in calls if c[0] == "mount"] == ["/", "/boot/efi"]
    assert build.grub_install_argv(FIXTURES["uefi"]) == [
        "grub-install", "--target=x86_64-efi", "--efi-directory=/boot/efi", "--removable", "--no-nvram"]  # fmt: skip


def test_ext3_steps() -> None:
    calls = _steps("ext3")
    assert not any(c[0] in ("pvcreate", "vgcreate", "lvcreate") for c in calls)
    assert ("mkfs", "ext3", "/dev/sda1", ("label", "root")) in calls
    fstab = next(c[2] for c in calls if c[0] == "write").decode()
    assert "UUID=uuid-of-sda1 / ext3 errors=remount-ro 0 1" in fstab
    assert "UUID=uuid-of-sda2 none swap sw 0 0" in fstab
    # the labelled disk, not the kernel's /dev/sda (which may be the appliance's own disk)
    assert build.grub_install_argv(FIXTURES["ext3"]) == ["grub-install", "--target=i386-pc", build.GUEST_DISK]
    assert build.GUEST_DISK == "/dev/disk/guestfs/fixture"


def test_unknown_fixture() -> None:
    with pytest.raises(ValueError, match="unknown fixture"):
        fixture_path("zfs")


# -- the real image --------------------------------------------------------------------------------
@pytest.mark.integration
def test_bios_fixture_layout() -> None:
    image = fixture_path("bios")
    assert image.name.endswith(".qcow2") and image.parent == cache.cache_base()
    g = Appliance()
    g.add_drive(str(image), readonly=True, format="qcow2")
    with g:
        assert g.part_get_parttype("/dev/sda") == "msdos"
        assert g.part_get_bootable("/dev/sda", 1)
        assert g.part_get_mbr_id("/dev/sda", 2) == 0x8E
        assert b"GRUB" in bytes(g.pread_device("/dev/sda", 512, 0))  # boot.img in the MBR
        assert [str(v) for v in g.vgs()] == ["rootvg"]
        assert sorted(str(lv) for lv in g.lvs()) == ["/dev/rootvg/root", "/dev/rootvg/swap", "/dev/rootvg/var"]
        assert g.lvs_full()[0]["lv_size"] > 0
        var_size = next(int(lv["lv_size"]) for lv in g.lvs_full() if lv["lv_name"] == "var")
        assert var_size >= 300 * MiB
        assert (g.vfs_type("/dev/sda1"), g.vfs_type("/dev/rootvg/root")) == ("ext4", "ext4")
        assert (g.vfs_type("/dev/rootvg/var"), g.vfs_type("/dev/rootvg/swap")) == ("xfs", "swap")
        g.mount_ro("/dev/rootvg/root", "/")
        g.mount_ro("/dev/sda1", "/boot")
        g.mount_ro("/dev/rootvg/var", "/var")
        _check_tree(g)


def _check_tree(g: Guest) -> None:
    assert g.is_dir("/boot/grub/i386-pc") and g.is_file("/boot/grub/i386-pc/core.img")
    grub_cfg = bytes(g.read_file("/boot/grub/grub.cfg")).decode()
    assert "root=/dev/mapper/rootvg-root" in grub_cfg and "console=ttyS0,115200" in grub_cfg
    assert any(str(f).startswith("vmlinuz-") for f in g.ls("/boot"))
    assert any(str(f).startswith("initrd.img-") for f in g.ls("/boot"))
    fstab = bytes(g.read_file("/etc/fstab")).decode()
    assert f"UUID={g.vfs_uuid('/dev/sda1')} /boot ext4" in fstab
    assert "/dev/mapper/rootvg-var /var xfs" in fstab and "/dev/mapper/rootvg-swap none swap" in fstab
    assert bytes(g.read_file("/etc/hostname")) == b"imgclone-fixture\n"
    assert bytes(g.read_file("/etc/exclude.rootvg")) == b"^./var/tmp/\n"
    assert g.is_file("/var/tmp/imgclone-scratch") and g.is_dir("/var/lib/dpkg")
    assert not g.exists("/usr/share/man/man1") and not g.exists("/usr/share/locale/de")
