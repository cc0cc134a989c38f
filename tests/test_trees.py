"""model/trees.py: the streams a layout's filesystems and btrfs subvolumes make, pure."""

from __future__ import annotations

from dataclasses import replace

from imgclone.model.layout import Filesystem, FsType, Layout, Subvolume
from imgclone.model.trees import mounted, top_level, trees
from tests.layouts import stacks


def btrfs() -> Layout:
    """The btrfs fixture's shape: @ at /, @home at /home, snapper's nested @/.snapshots with snapshot 1."""
    layout = stacks()
    snaps = Subvolume("sv-root-snaps", "fs-root", "@/.snapshots")
    return replace(layout, lvs=(), vgs=(), filesystems=layout.filesystems[:2], subvolumes=(*layout.subvolumes, snaps))


def test_a_filesystem_without_subvolumes_is_one_tree_at_its_mount_point() -> None:
    [boot] = [t for t in trees(btrfs()) if t.fs.id == "fs-boot"]
    assert (boot.id, boot.subvol, boot.mountpoint, boot.shown_at, boot.nested) == ("fs-boot", "", "/boot", "/boot", ())
    assert boot.mount_options == ""


def test_each_subvolume_is_a_tree_without_the_ones_nested_in_it_and_snapshots_are_left_out() -> None:
    got = {t.id: t for t in trees(btrfs())}
    assert set(got) == {"fs-root", "sv-root-at", "sv-root-home", "sv-root-snaps", "fs-boot"}
    top, at, snaps = got["fs-root"], got["sv-root-at"], got["sv-root-snaps"]
    assert (top.shown_at, top.mountpoint, sorted(top.nested)) == ("", "", ["@", "@home"])
    assert top.mount_options == "subvolid=5", "a plain mount would show the default subvolume"
    assert (at.mountpoint, at.nested, at.mount_options) == ("/", (".snapshots",), "subvol=@,compress=zstd")
    assert got["sv-root-home"].mount_options == "subvol=@home", "neither its mount nor the filesystem compresses"
    # nested in @, not mounted on its own: it shows inside @; the snapshot in it is not streamed but left out of it
    assert (snaps.mountpoint, snaps.shown_at, snaps.nested) == ("", "/.snapshots", ("1/snapshot",))


def test_snapshots_are_trees_when_asked_for() -> None:
    got = {t.id: t for t in trees(btrfs(), snapshots=True)}
    snap = got["sv-root-snap"]
    assert (snap.subvol, snap.shown_at, snap.mountpoint) == ("@/.snapshots/1/snapshot", "/.snapshots/1/snapshot", "")


def test_trees_come_parents_first_and_mounted_ones_in_mount_order() -> None:
    order = [t.id for t in trees(btrfs())]
    assert order.index("sv-root-at") < order.index("sv-root-snaps") < order.index("fs-root")
    assert [t.mountpoint for t in mounted(btrfs())] == ["/", "/boot", "/home"]


def test_a_top_level_mounted_where_no_subvolume_is_shows_there() -> None:
    """Top level at /srv (no subvol=), a subvolume `data` inside it: it shows at /srv/data."""
    fs = Filesystem("fs-srv", "part-sda2", FsType.BTRFS, "/srv", 1 << 30)
    layout = Layout(filesystems=(fs,), subvolumes=(Subvolume("sv-srv-data", "fs-srv", "data"),))
    got = {t.id: t for t in trees(layout)}
    assert (got["fs-srv"].mountpoint, got["fs-srv"].nested) == ("/srv", ("data",))
    assert got["sv-srv-data"].shown_at == "/srv/data"
    assert top_level(fs).mount_options == "subvolid=5"
