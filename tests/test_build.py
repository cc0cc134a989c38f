"""build: the libguestfs calls that make a planned layout, recorded by a fake Guest."""

from __future__ import annotations

import pytest

from imgclone.errors import LayoutError
from imgclone.model.layout import (
    Disk,
    Filesystem,
    FsType,
    Layout,
    LogicalVolume,
    PartFlag,
    Partition,
    TableType,
    VolumeGroup,
)
from imgclone.model.parttypes import GPT_TYPE_FLAGS, GPT_TYPES
from imgclone.plan.planner import make_plan
from imgclone.plan.types import Target
from imgclone.storage import build
from tests.fakes import FakeGuest

MiB = 1 << 20


def test_msdos_with_logical_partitions() -> None:
    # a source with 2 primaries and logicals 5, 6, 7 (the extended partition is a container, not in the layout)
    disk = Disk("disk-sda", "/dev/sda", 4096 * MiB)
    starts = {1: 1, 2: 101, 5: 202, 6: 303, 7: 404}
    parts = tuple(Partition(f"part-sda{n}", "disk-sda", n, s * MiB, 100 * MiB) for n, s in starts.items())
    fss = tuple(
        Filesystem(f"fs-{n}", p.id, FsType.EXT4, f"/m{n}", p.size, MiB) for n, p in zip(starts, parts, strict=True)
    )
    p = make_plan(Layout((disk,), parts, filesystems=fss), [Target("/img/m.img", 0)])
    g = FakeGuest()
    build.partition_disks(g, build.Devices(p.target, {"disk-t0": "/dev/sda"}))
    assert g.named("part_init") == [("/dev/sda", "msdos")]
    s = MiB // 512
    assert g.named("part_add") == [
        ("/dev/sda", "p", 1 * s, 101 * s - 1),
        ("/dev/sda", "p", 101 * s, 201 * s - 1),
        ("/dev/sda", "p", 201 * s, 301 * s - 1),
        ("/dev/sda", "e", 301 * s, 503 * s - 1),  # 1 MiB before logical 5, to the end of logical 6
        ("/dev/sda", "l", 302 * s, 402 * s - 1),
        ("/dev/sda", "l", 403 * s, 503 * s - 1),
    ]
    assert [x.number for x in p.target.partitions] == [1, 2, 3, 5, 6]
    paths = build.Devices(p.target, {"disk-t0": "/dev/sda"})
    assert [paths.path(f.device) for f in p.target.filesystems] == [f"/dev/sda{n}" for n in (1, 2, 3, 5, 6)]


def test_four_partitions_stay_primary() -> None:
    disk = Disk("disk-sda", "/dev/sda", 4096 * MiB)
    parts = tuple(Partition(f"part-sda{n}", "disk-sda", n, n * 100 * MiB, 100 * MiB) for n in range(1, 5))
    fss = tuple(Filesystem(f"fs-{n}", p.id, FsType.EXT4, f"/m{n}", p.size, MiB) for n, p in enumerate(parts))
    p = make_plan(Layout((disk,), parts, filesystems=fss), [Target("/img/m.img", 0)])
    g = FakeGuest()
    build.partition_disks(g, build.Devices(p.target, {"disk-t0": "/dev/sda"}))
    assert [args[1] for args in g.named("part_add")] == ["p", "p", "p", "p"]


def lvm_layout(extent: int, lv_size: int) -> Layout:
    disk = Disk("disk-t0", "/img/t.img", 4096 * MiB)
    part = Partition("part-t0-1", "disk-t0", 1, MiB, 4094 * MiB)
    vg = VolumeGroup("vg-a", "altinst_a", ("part-t0-1",), extent)
    return Layout((disk,), (part,), (vg,), (LogicalVolume("lv-a", "alt_a", "vg-a", lv_size),))


def test_vgcreate_keeps_the_source_extent_size() -> None:
    g = FakeGuest()
    build.create_lvm(g, build.Devices(lvm_layout(32 * MiB, 64 * 32 * MiB), {"disk-t0": "/dev/sda"}))
    assert g.named("pvcreate") == [("/dev/sda1",)]
    assert g.named("appliance_command") == [(["lvm", "vgcreate", "--yes", "-s", "32768k", "altinst_a", "/dev/sda1"],)]
    assert g.named("lvcreate") == [("alt_a", "altinst_a", 2048)]
    g = FakeGuest()
    build.create_lvm(g, build.Devices(lvm_layout(4 * MiB, 100 * MiB), {"disk-t0": "/dev/sda"}))
    assert g.named("vgcreate") == [("altinst_a", ["/dev/sda1"])] and g.named("appliance_command") == []
    g = FakeGuest()  # extents below 1 MiB: an LV of 1001 extents is not whole MiB; lvcreate counts extents
    layout = lvm_layout(512 * 1024, 1001 * 512 * 1024)
    build.create_lvm(g, build.Devices(layout, {"disk-t0": "/dev/sda"}))
    assert g.named("appliance_command")[-1] == (["lvm", "lvcreate", "--yes", "-l", "1001", "-n", "alt_a", "altinst_a"],)


def test_layout_refuses_an_extent_size_lvm_does_not_take() -> None:
    assert lvm_layout(32 * MiB, 32 * MiB).validate() is None
    assert lvm_layout(384 * 1024, 384 * 1024).validate() is None  # a multiple of 128 KiB
    with pytest.raises(LayoutError, match="VolumeGroup vg-a: extent size 3000 is not one LVM takes"):
        lvm_layout(3000, 3000).validate()


def test_gpt_types_are_the_registered_guids() -> None:
    """A swap partition on GPT gets Linux swap's type GUID (it once got a GUID no tool knows)."""
    disk = Disk("disk-t0", "/img/t.img", 4096 * MiB, TableType.GPT)
    flags = (PartFlag.SWAP, PartFlag.ESP, PartFlag.LVM, PartFlag.BIOS_GRUB)
    parts = tuple(Partition(f"p{n}", "disk-t0", n, n * MiB, MiB, (f,)) for n, f in enumerate(flags, 1))
    g = FakeGuest()
    build.partition_disks(g, build.Devices(Layout((disk,), parts), {"disk-t0": "/dev/sda"}))
    assert [args[2] for args in g.named("part_set_gpt_type")] == [
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",  # sfdisk --label gpt -T: Linux swap
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",  # EFI System
        "E6D6D379-F507-44C2-A23C-238F2A3DF928",  # Linux LVM
        "21686148-6449-6E6F-744E-656564454649",  # BIOS boot
    ]
    assert set(GPT_TYPES.values()) == set(GPT_TYPE_FLAGS)  # the builder, the planner and the probes share them


def test_thin_pool_before_its_thin_lv_with_lvms_own_arguments() -> None:
    """The pool with its data, chunk and metadata sizes first, then the thin LV in it at its virtual size; the
    appliance's LVM is told not to run thin_check (it has none, and a new pool needs none)."""
    from tests.layouts import stacks

    p = make_plan(stacks(), [Target("/img/t.qcow2", 16 << 30)])
    g = FakeGuest()
    build.create_lvm(g, build.Devices(p.target, {"disk-t0": "/dev/sda"}))
    assert g.named("pvcreate") == [("/dev/sda3",)] and g.named("vgcreate") == [("altinst_vg0", ["/dev/sda3"])]
    no_check = ["--config", 'global { thin_check_executable = "" }']
    assert [c[0] for c in g.named("appliance_command")] == [
        ["lvm", "lvcreate", *no_check, "--yes", "-n", "alt_pool", "--type", "thin-pool", "-L", f"{1 << 30}b",
         "--zero", "y", "--chunksize", "64k", "--poolmetadatasize", f"{4 * MiB}b", "altinst_vg0"],
        ["lvm", "lvcreate", *no_check, "--yes", "-n", "alt_data", "--type", "thin", "-V", f"{3 << 30}b",
         "--thinpool", "alt_pool", "altinst_vg0"],
    ]  # fmt: skip
    assert g.named("lvcreate") == []


def test_subvolumes_made_parents_first_in_the_top_level_and_the_default_set() -> None:
    """@data/sub is mounted at /sub, above its parent @data's /srv/data: it is still made after @data. The
    default subvolume gets its new id from the new filesystem."""
    from imgclone.model.layout import Subvolume
    from imgclone.model.trees import trees

    disk = Disk("disk-sda", "/dev/sda", 4096 * MiB)
    part = Partition("part-sda1", "disk-sda", 1, MiB, 2048 * MiB)
    fs = Filesystem("fs-root", "part-sda1", FsType.BTRFS, "/", 2048 * MiB, 100 * MiB)
    subs = (Subvolume("sv-sub", "fs-root", "@data/sub", "/sub"), Subvolume("sv-data", "fs-root", "@data", "/srv/data"),
            Subvolume("sv-root", "fs-root", "@", "/", default=True))  # fmt: skip
    layout = Layout((disk,), (part,), filesystems=(fs,), subvolumes=subs)
    g = FakeGuest({"appliance_command": lambda argv: "257\n" if argv[1] == "inspect-internal" else ""})
    devs = build.Devices(layout, {"disk-sda": "/dev/sda"})
    build.create_subvolumes(g, devs, trees(layout))
    made = [c[0][-1] for c in g.named("appliance_command") if c[0][1:3] == ["subvolume", "create"]]
    assert made == ["/sysroot/@", "/sysroot/@data", "/sysroot/@data/sub"]
    assert g.named("mount_options")[0] == ("subvolid=5", "/dev/sda1", "/")
    assert ["btrfs", "subvolume", "set-default", "257", "/sysroot"] in [c[0] for c in g.named("appliance_command")]
