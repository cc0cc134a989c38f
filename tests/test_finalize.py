"""Phase 3's initramfs decision, with a small fake guest: read the initramfs only when the root changed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from imgclone.model.journal import Journal
from imgclone.model.layout import FsType, Layout
from imgclone.phases.finalize import Finalize, ensure_initramfs
from tests.fakes import FakeGuest

SOURCE = json.loads((Path(__file__).parent / "data" / "layout-bios-lvm.json").read_text())


def ls(path: str) -> list[str]:
    assert path == "/boot"
    return ["vmlinuz-6.1.0-28-amd64", "initrd.img-6.1.0-28-amd64", "config-6.1.0-28-amd64"]


def context(root_type: FsType, listing: str = "") -> tuple[Finalize, FakeGuest]:
    """ls /boot and command() of a fake guest, recorded; lsinitramfs answers with `listing`."""
    layout = Layout.from_dict(SOURCE)
    fss = tuple(dataclasses.replace(f, type=root_type) if f.mountpoint == "/" else f for f in layout.filesystems)
    g = FakeGuest({"ls": ls, "command": lambda argv: listing if argv[0] == "lsinitramfs" else ""})
    journal = Journal.from_dict({"source_layout": SOURCE})
    ctx = Finalize(targets=("t.qcow2",), journal=journal, layout=dataclasses.replace(layout, filesystems=fss))
    ctx.guest = g
    return ctx, g


def commands(g: FakeGuest) -> list[list[str]]:
    return [args[0] for args in g.named("command")]


def test_root_as_on_the_source_reads_no_initramfs() -> None:
    ctx, g = context(FsType.EXT4)
    ensure_initramfs(ctx)
    assert commands(g) == []
    assert ctx.actions == []


def test_converted_root_with_its_module_keeps_the_initramfs() -> None:
    ctx, g = context(FsType.XFS, listing="usr/lib/modules/6.1.0-28-amd64/kernel/fs/xfs/xfs.ko\n")
    ensure_initramfs(ctx)
    assert commands(g) == [["lsinitramfs", "/boot/initrd.img-6.1.0-28-amd64"]]
    assert ctx.actions == []


def test_converted_root_without_its_module_regenerates() -> None:
    ctx, g = context(FsType.XFS, listing="usr/lib/modules/6.1.0-28-amd64/kernel/fs/ext4/ext4.ko\n")
    ensure_initramfs(ctx)
    assert commands(g)[-1] == ["update-initramfs", "-u", "-k", "6.1.0-28-amd64"]
    assert ctx.actions == ["regenerated /boot/initrd.img-6.1.0-28-amd64 for xfs"]


def test_journal_without_source_layout_reads_the_initramfs() -> None:
    ctx, g = context(FsType.EXT4, listing="kernel/fs/ext4/ext4.ko\n")
    ctx.journal = Journal()
    ensure_initramfs(ctx)
    assert [c[0] for c in commands(g)] == ["lsinitramfs"]


def test_rename_volumes_renames_a_thin_pool_which_libguestfs_does_not_list() -> None:
    """libguestfs's lvs lists no thin pool: its alt_ name is found in LVM's own listing, and renamed too."""
    from imgclone.phases.finalize import rename_volumes
    from tests.layouts import stacks

    layout = stacks()
    g = FakeGuest({
        "vgs": ["altinst_vg0"],
        "lvs": ["/dev/vg0/alt_data"],
        "appliance_command": "  vg0 alt_data\n  vg0 alt_pool\n",
    })  # fmt: skip
    ctx = Finalize(targets=("t.qcow2",), journal=Journal.from_dict({}), layout=layout)
    ctx.guest = g
    rename_volumes(ctx)
    assert g.named("vgrename") == [("altinst_vg0", "vg0")]
    assert [c[0] for c in g.named("appliance_command")] == [["lvm", "lvs", "--noheadings", "-o", "vg_name,lv_name",
                                                              "vg0"]]  # fmt: skip
    assert sorted(g.named("lvrename")) == [
        ("/dev/vg0/alt_data", "/dev/vg0/data"),
        ("/dev/vg0/alt_pool", "/dev/vg0/pool"),
    ]
    assert "renamed logical volume vg0/alt_pool → pool" in ctx.actions
