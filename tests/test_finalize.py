"""Phase 3's initramfs decision, with a small fake guest: read the initramfs only when the root changed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from imgclone.model.layout import FsType, Layout
from imgclone.phases.finalize import Finalize, ensure_initramfs

SOURCE = json.loads((Path(__file__).parent / "data" / "layout-bios-lvm.json").read_text())


class FakeGuest:
    """ls /boot and command(), recorded; lsinitramfs answers with `listing`."""

    def __init__(self, listing: str) -> None:
        self.listing = listing
        self.commands: list[list[str]] = []

    def ls(self, path: str) -> list[str]:
        assert path == "/boot"
        return ["vmlinuz-6.1.0-28-amd64", "initrd.img-6.1.0-28-amd64", "config-6.1.0-28-amd64"]

    def command(self, argv: list[str]) -> str:
        self.commands.append(argv)
        return self.listing if argv[0] == "lsinitramfs" else ""


def context(root_type: FsType, listing: str = "") -> tuple[Finalize, FakeGuest]:
    layout = Layout.from_dict(SOURCE)
    fss = tuple(dataclasses.replace(f, type=root_type) if f.mountpoint == "/" else f for f in layout.filesystems)
    g = FakeGuest(listing)
    doc: dict[str, Any] = {"source_layout": SOURCE}
    ctx = Finalize(targets=("t.qcow2",), doc=doc, layout=dataclasses.replace(layout, filesystems=fss))
    ctx.guest = g  # type: ignore[assignment]
    return ctx, g


def test_root_as_on_the_source_reads_no_initramfs() -> None:
    ctx, g = context(FsType.EXT4)
    ensure_initramfs(ctx)
    assert g.commands == []
    assert ctx.actions == []


def test_converted_root_with_its_module_keeps_the_initramfs() -> None:
    ctx, g = context(FsType.XFS, listing="usr/lib/modules/6.1.0-28-amd64/kernel/fs/xfs/xfs.ko\n")
    ensure_initramfs(ctx)
    assert g.commands == [["lsinitramfs", "/boot/initrd.img-6.1.0-28-amd64"]]
    assert ctx.actions == []


def test_converted_root_without_its_module_regenerates() -> None:
    ctx, g = context(FsType.XFS, listing="usr/lib/modules/6.1.0-28-amd64/kernel/fs/ext4/ext4.ko\n")
    ensure_initramfs(ctx)
    assert g.commands[-1] == ["update-initramfs", "-u", "-k", "6.1.0-28-amd64"]
    assert ctx.actions == ["regenerated /boot/initrd.img-6.1.0-28-amd64 for xfs"]


def test_journal_without_source_layout_reads_the_initramfs() -> None:
    ctx, g = context(FsType.EXT4, listing="kernel/fs/ext4/ext4.ko\n")
    ctx.doc.clear()
    ensure_initramfs(ctx)
    assert [c[0] for c in g.commands] == ["lsinitramfs"]
