"""The trees an archive streams: each filesystem's, and on a btrfs with subvolumes, each subvolume's.

A filesystem without subvolumes is one tree, mounted at its mount point, and one stream. A btrfs with subvolumes is
several: its top level (subvolume id 5, the filesystem's own id) and each subvolume (the subvolume's id), each
streamed alone and without the subvolumes nested in it, which are trees of their own. A restore creates the
subvolumes first, parents first, and extracts each stream into its subvolume. Snapshots (snapper's
`.snapshots/N/snapshot`) are left out unless asked for: their parent's stream leaves out their directory too, and
a restore makes no subvolume for them.

`shown_at` is where a tree shows in the system (its mount point, or its place inside a tree that shows):
the exclude rules read names there; "" for a tree that shows nowhere (the top level under a mounted `@`), which
the rules do not touch.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgclone.model.layout import Filesystem, Layout, Subvolume, mount_key

TOP_LEVEL = 5  # btrfs's top-level subvolume id


@dataclass(frozen=True)
class Tree:
    """One stream's tree: a filesystem (its top level on a btrfs) or one btrfs subvolume."""

    id: str  # the stream's id: the filesystem's, or the subvolume's
    fs: Filesystem
    subvol: str = ""  # the subvolume's path from the top level; "" for the filesystem itself
    mountpoint: str = ""  # where it is mounted on its own ("" when it is not)
    shown_at: str = ""  # where the system shows it ("" when nowhere)
    nested: tuple[str, ...] = ()  # subvolumes inside it, as paths relative to it: not in its stream
    top_level: bool = False  # a btrfs's top level (a plain mount of it shows the default subvolume)
    compress: str = ""  # btrfs's compress= or compress-force= option of the source's mount: files restored alike

    @property
    def mount_options(self) -> str:
        """What mounts exactly this tree on its device (the subvolume, or a btrfs's top level by id), compressing
        what is written into it as the source's mount did (else a restore needs more room than the source used)."""
        which = f"subvol={self.subvol}" if self.subvol else f"subvolid={TOP_LEVEL}" if self.top_level else ""
        return ",".join(o for o in (which, self.compress) if o)

    @property
    def label(self) -> str:
        """How a message names it: the mount point, else the subvolume's path."""
        return self.shown_at or f"{self.fs.id}:{self.subvol or '<top level>'}"


def trees(layout: Layout, *, snapshots: bool = False) -> list[Tree]:
    """Every tree to stream, in mount order (parents first); snapshots only when asked for."""
    out: list[Tree] = []
    for fs in layout.filesystems:
        every = layout.subvolumes_of(fs.id)
        if not every:
            out.append(
                Tree(fs.id, fs, mountpoint=fs.mountpoint, shown_at=fs.mountpoint, compress=compression(fs.options))
            )
            continue
        top_mounted = not any(s.mountpoint == fs.mountpoint for s in every)
        top_at = fs.mountpoint if top_mounted else ""
        squeeze = compression(fs.options)
        out.append(Tree(fs.id, fs, mountpoint=top_at, shown_at=top_at, nested=_children("", every), top_level=True,
                        compress=squeeze))  # fmt: skip
        shown: dict[str, str] = {"": top_at}
        for sv in every:  # parents first: a nested subvolume shows inside its parent
            parent = _parent(sv.path, every)
            inside = shown.get(parent, "")
            shown[sv.path] = sv.mountpoint or (_join(inside, _relative(sv.path, parent)) if inside else "")
            if snapshots or not sv.snapshot:
                out.append(Tree(sv.id, fs, sv.path, sv.mountpoint, shown[sv.path], _children(sv.path, every),
                                compress=compression(sv.options) or squeeze))  # fmt: skip
    return sorted(out, key=lambda t: (mount_key(t.shown_at) if t.shown_at else (99, ""), t.subvol.count("/")))


def mounted(layout: Layout) -> list[Tree]:
    """The trees mounted on their own, parents first: what a clone's tree is mounted from."""
    return sorted((t for t in trees(layout) if t.mountpoint), key=lambda t: mount_key(t.mountpoint))


def compression(options: str) -> str:
    """btrfs's compression option among mount options ("subvol=@,compress=zstd:3" → "compress=zstd:3")."""
    return next((o for o in options.split(",") if o.split("=")[0] in ("compress", "compress-force")), "")


def top_level(fs: Filesystem) -> Tree:
    """A btrfs's top level, where its subvolumes are made (each shows there as a directory)."""
    return Tree(fs.id, fs, top_level=True)


def _parent(path: str, subvolumes: list[Subvolume]) -> str:
    """The path of the subvolume holding path ("" for the top level): the longest other path above it."""
    above = [s.path for s in subvolumes if path.startswith(s.path + "/")]
    return max(above, key=len, default="")


def _children(path: str, subvolumes: list[Subvolume]) -> tuple[str, ...]:
    return tuple(_relative(s.path, path) for s in subvolumes if s.path != path and _parent(s.path, subvolumes) == path)


def _relative(path: str, parent: str) -> str:
    return path.removeprefix(parent + "/") if parent else path


def _join(mountpoint: str, rel: str) -> str:
    return mountpoint.rstrip("/") + "/" + rel
