"""guest/via.py: where the phases work on the clone (--via host|appliance|auto), what a plan needs of the host, and
what the host has (abilities() on a fake /proc and /lib/modules)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imgclone.errors import UsageError
from imgclone.guest import via
from imgclone.guest.via import Choice, Drive, HostAbilities, abilities, choose, lacking, needs
from imgclone.model.layout import (
    Disk,
    Filesystem,
    FsType,
    Layout,
    LogicalVolume,
    PartFlag,
    Partition,
    Swap,
    TableType,
    VolumeGroup,
)

MIB, GIB = 1 << 20, 1 << 30
EXT_TOOLS = ("mke2fs", "tune2fs")
ALL_TOOLS = frozenset([*via.ALWAYS, *(t for tools in via.FS_TOOLS.values() for t in tools), "lvm"])
BLOCK = [Drive("/dev/sdb", "raw", True)]


def plain_layout() -> Layout:
    """An msdos disk: /boot ext4, / xfs, no LVM, no swap."""
    disk = Disk("disk-a", "/dev/sda", 20 * GIB)
    parts = (Partition("p1", "disk-a", 1, MIB, GIB, (PartFlag.BOOT,)), Partition("p2", "disk-a", 2, GIB + MIB, 8 * GIB))
    fss = (
        Filesystem("fs-boot", "p1", FsType.EXT4, "/boot", GIB),
        Filesystem("fs-root", "p2", FsType.XFS, "/", 8 * GIB),
    )
    return Layout((disk,), parts, filesystems=fss)


def uefi_lvm_layout() -> Layout:
    """A GPT disk: an ESP (vfat), /boot ext4, a PV of rootvg holding / (ext4) and a swap LV."""
    disk = Disk("disk-a", "/dev/sda", 20 * GIB, TableType.GPT)
    parts = (
        Partition("p1", "disk-a", 1, MIB, 512 * MIB, (PartFlag.ESP,)),
        Partition("p2", "disk-a", 2, 513 * MIB, GIB),
        Partition("p3", "disk-a", 3, 1537 * MIB, 10 * GIB, (PartFlag.LVM,)),
    )
    vg = VolumeGroup("vg-root", "rootvg", ("p3",))
    lvs = (LogicalVolume("lv-root", "root", "vg-root", 8 * GIB), LogicalVolume("lv-swap", "swap", "vg-root", GIB))
    fss = (
        Filesystem("fs-efi", "p1", FsType.VFAT, "/boot/efi", 512 * MIB),
        Filesystem("fs-boot", "p2", FsType.EXT4, "/boot", GIB),
        Filesystem("fs-root", "lv-root", FsType.EXT4, "/", 8 * GIB),
    )
    return Layout((disk,), parts, (vg,), lvs, fss, (Swap("swap-0", "lv-swap", GIB),))


def able(**changes: object) -> HostAbilities:
    """A root host with device-mapper, every filesystem of the layouts here and every program; `changes` take away."""
    given: dict[str, object] = {
        "root": True,
        "device_mapper": True,
        "filesystems": frozenset({"ext2", "ext3", "ext4", "xfs", "vfat", "btrfs"}),
        "tools": ALL_TOOLS,
    }
    given.update(changes)
    return HostAbilities(**given)  # type: ignore[arg-type]


# -- needs / lacking ------------------------------------------------------------------------------------------------


def test_needs_of_a_plain_layout_are_its_types_their_tools_and_no_lvm() -> None:
    types, tools, lvm = needs(plain_layout())
    assert types == ["ext4", "xfs"]
    assert lvm is False
    assert set(via.ALWAYS) <= set(tools)
    assert {"mke2fs", "tune2fs", "mkfs.xfs", "xfs_admin"} <= set(tools)
    assert not {"lvm", "mkfs.vfat", "fatlabel", "mkswap", "swaplabel", "mkfs.btrfs"} & set(tools)


def test_needs_of_an_lvm_layout_with_vfat_and_swap() -> None:
    types, tools, lvm = needs(uefi_lvm_layout())
    assert types == ["ext4", "vfat"]  # sorted, each once (ext4 twice in the layout)
    assert lvm is True
    assert {"lvm", "mkfs.vfat", "fatlabel", "mkswap", "swaplabel", *EXT_TOOLS} <= set(tools)
    assert "mkfs.xfs" not in tools


def test_lacking_names_each_missing_thing() -> None:
    layout = uefi_lvm_layout()
    assert lacking(layout, able()) == []
    host = able(device_mapper=False, filesystems=frozenset({"ext4"}), tools=ALL_TOOLS - {"fatlabel"})
    assert lacking(layout, host) == ["device-mapper (for the plan's LVM)", "vfat in its kernel", "the program fatlabel"]
    # device-mapper matters only to a plan with LVM
    assert lacking(plain_layout(), able(device_mapper=False)) == []


# -- choose: asked for ------------------------------------------------------------------------------------------------


def test_appliance_asked_is_the_appliance_even_when_the_host_could() -> None:
    assert choose("appliance", BLOCK, plain_layout(), able()) == Choice("appliance", "--via appliance")
    # and even where the host could not
    qcow2 = [Drive("/img/t.qcow2", "qcow2", False)]
    assert choose("appliance", qcow2, plain_layout(), able(root=False)).via == "appliance"


def test_host_asked_and_possible_is_the_host() -> None:
    assert choose("host", BLOCK, uefi_lvm_layout(), able()) == Choice("host", "--via host")
    raw = [Drive("/img/t.img", "raw", False)]  # a raw image: the host attaches it (a loop device)
    assert choose("host", raw, plain_layout(), able()).via == "host"


@pytest.mark.parametrize(
    ("drives", "layout", "host", "reason"),
    [
        pytest.param(BLOCK, "plain", able(root=False), "not root", id="not-root"),
        pytest.param(
            [Drive("/dev/sdb", "raw", True), Drive("/img/t.qcow2", "qcow2", False)],
            "plain",
            able(),
            "/img/t.qcow2 is a qcow2 image",
            id="qcow2",
        ),
        pytest.param(BLOCK, "lvm", able(device_mapper=False), "device-mapper (for the plan's LVM)", id="no-dm"),
        pytest.param(BLOCK, "lvm", able(filesystems=frozenset({"ext4", "xfs"})), "vfat in its kernel", id="no-vfat"),
        pytest.param(BLOCK, "lvm", able(tools=ALL_TOOLS - {"mkfs.vfat"}), "the program mkfs.vfat", id="no-mkfs.vfat"),
        pytest.param(BLOCK, "plain", able(tools=ALL_TOOLS - {"sfdisk"}), "the program sfdisk", id="no-sfdisk"),
    ],
)
def test_host_asked_is_refused_saying_why(drives: list[Drive], layout: str, host: HostAbilities, reason: str) -> None:
    """--via host the host cannot serve: a UsageError before anything is written, naming the reason and the way out."""
    plan = plain_layout() if layout == "plain" else uefi_lvm_layout()
    with pytest.raises(UsageError) as e:
        choose("host", drives, plan, host)
    assert e.value.message.startswith("--via host: ")
    assert reason in e.value.message
    assert e.value.hint is not None and "--via appliance" in e.value.hint
    assert e.value.exit_code == 2


def test_refusal_names_every_missing_thing_at_once() -> None:
    host = able(device_mapper=False, filesystems=frozenset({"ext4"}), tools=ALL_TOOLS - {"lvm", "swaplabel"})
    with pytest.raises(UsageError) as e:
        choose("host", BLOCK, uefi_lvm_layout(), host)
    for missing in ("device-mapper", "vfat in its kernel", "the program swaplabel", "the program lvm"):
        assert missing in e.value.message


def test_an_unknown_via_is_a_usage_error() -> None:
    for asked in ("sometimes", "", "Host"):
        with pytest.raises(UsageError, match=f"--via {asked}: expected host, appliance or auto"):
            choose(asked, BLOCK, plain_layout(), able())


# -- choose: auto ---------------------------------------------------------------------------------------------------


def test_auto_takes_the_host_for_block_devices_when_nothing_lacks() -> None:
    two = [Drive("/dev/sdb", "raw", True), Drive("/dev/sdc", "raw", True)]
    choice = choose("auto", two, uefi_lvm_layout(), able())
    assert choice.via == "host"
    assert "block devices" in choice.reason


def test_auto_leaves_an_image_to_the_appliance() -> None:
    """Even a raw image the host could attach: auto keeps an untrusted filesystem away from the host's kernel."""
    for drive in (Drive("/img/t.img", "raw", False), Drive("/img/t.qcow2", "qcow2", False)):
        choice = choose("auto", [Drive("/dev/sdb", "raw", True), drive], plain_layout(), able())
        assert choice.via == "appliance"
        assert drive.path in choice.reason
    for image in (Drive("/img/t.img", "raw", False), Drive("/img/t.qcow2", "qcow2", False)):
        assert choose("auto", [image], plain_layout(), able()).reason == (
            f"{image.path} is an image: images stay with the appliance (--via host attaches a raw one)"
        )


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        (able(root=False), "not root"),
        (able(device_mapper=False), "device-mapper"),
        (able(filesystems=frozenset({"ext4"})), "vfat in its kernel"),
        (able(tools=ALL_TOOLS - {"mkswap"}), "the program mkswap"),
    ],
)
def test_auto_falls_back_to_the_appliance_when_the_host_lacks_something(host: HostAbilities, reason: str) -> None:
    choice = choose("auto", BLOCK, uefi_lvm_layout(), host)
    assert choice.via == "appliance"
    assert reason in choice.reason


# -- abilities --------------------------------------------------------------------------------------------------------

PROC_FILESYSTEMS = "nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\n\text3\n\text2\n\text4\n\tsquashfs\nnodev\tdevpts\n"
PROC_MISC_DM = "242 fuse\n236 device-mapper\n183 hw_random\n"
PROC_MISC = "242 fuse\n183 hw_random\n"


def fake_proc(tmp_path: Path, filesystems: str, misc: str) -> str:
    proc = tmp_path / "proc"
    proc.mkdir(parents=True)
    (proc / "filesystems").write_text(filesystems)
    (proc / "misc").write_text(misc)
    return str(proc)


def fake_modules(tmp_path: Path, *files: str) -> str:
    """/lib/modules/<this kernel's release>/kernel/<files> (empty module files)."""
    modules = tmp_path / "modules"
    kernel = modules / os.uname().release / "kernel"
    kernel.mkdir(parents=True, exist_ok=True)
    for name in files:
        (kernel / name).parent.mkdir(parents=True, exist_ok=True)
        (kernel / name).write_bytes(b"")
    return str(modules)


def test_abilities_from_proc_alone(tmp_path: Path) -> None:
    """Built-in or loaded: what /proc/filesystems lists (ext2 and ext3 through ext4's driver) and device-mapper's
    control device in /proc/misc; a type nothing provides is not had."""
    proc = fake_proc(tmp_path, PROC_FILESYSTEMS, PROC_MISC_DM)
    had = abilities(["ext2", "ext3", "ext4", "xfs", "vfat", "btrfs"], [], proc=proc, modules=fake_modules(tmp_path))
    assert had.filesystems == {"ext2", "ext3", "ext4"}
    assert had.device_mapper is True
    assert had.root == (os.geteuid() == 0)
    # a kernel whose ext4 driver lists only itself mounts ext2 and ext3 all the same
    only_ext4 = fake_proc(tmp_path / "only", "nodev\tproc\n\text4\n", PROC_MISC)
    assert abilities(["ext2", "ext3"], [], proc=only_ext4, modules=fake_modules(tmp_path)).filesystems == {
        "ext2",
        "ext3",
    }


def test_abilities_without_device_mapper_or_its_module(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, PROC_FILESYSTEMS, PROC_MISC)
    had = abilities(["ext4"], [], proc=proc, modules=fake_modules(tmp_path, "fs/xfs/xfs.ko"))
    assert had.device_mapper is False
    assert had.filesystems == {"ext4"}


def test_abilities_count_loadable_modules(tmp_path: Path) -> None:
    """A module under kernel/fs (vfat.ko in fat/, compressed xfs) is a filesystem the kernel can mount; dm-mod under
    kernel/drivers/md is device-mapper; only the module of that exact name counts."""
    proc = fake_proc(tmp_path, "nodev\tproc\n", PROC_MISC)
    modules = fake_modules(
        tmp_path, "fs/fat/vfat.ko", "fs/fat/fat.ko", "fs/xfs/xfs.ko.xz", "fs/btrfs/btrfs-helper.ko",
        "drivers/md/dm-mod.ko",
    )  # fmt: skip
    had = abilities(["vfat", "xfs", "btrfs", "ext4"], [], proc=proc, modules=modules)
    assert had.filesystems == {"vfat", "xfs"}
    assert had.device_mapper is True


def test_a_module_elsewhere_is_not_device_mapper(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, "nodev\tproc\n", PROC_MISC)
    modules = fake_modules(tmp_path, "drivers/md/dm-crypt.ko", "fs/dm-mod.ko")
    assert abilities([], [], proc=proc, modules=modules).device_mapper is False


def test_abilities_find_the_programs_on_path(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, PROC_FILESYSTEMS, PROC_MISC)
    had = abilities([], ["sh", "imgclone-no-such-program"], proc=proc, modules=fake_modules(tmp_path))
    assert had.tools == {"sh"}


def test_drives_of_tells_block_devices_from_images(tmp_path: Path) -> None:
    image = tmp_path / "t.img"
    image.write_bytes(b"")
    block = next((f"/dev/{n}" for n in ("loop0", "vda", "sda", "nvme0n1") if os.path.exists(f"/dev/{n}")), None)
    if block is None:
        pytest.skip("no block device node in /dev to stat")
    assert via.drives_of([(str(image), "raw"), (block, "raw")]) == [
        Drive(str(image), "raw", False),
        Drive(block, "raw", True),
    ]
