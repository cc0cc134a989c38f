"""Mount one stream's tree (model/trees.py), a filesystem or one btrfs subvolume; find the system's root."""

from __future__ import annotations

from imgclone.guest.interface import Guest
from imgclone.model.trees import Tree


def mount_tree(g: Guest, tree: Tree, device: str, mountpoint: str, *, readonly: bool = False) -> None:
    """Mount exactly `tree` of the filesystem on device at mountpoint: a subvolume by its path, a btrfs's top level
    by its id (a plain mount shows the default subvolume), any other filesystem as it is."""
    options = ",".join(o for o in ("ro" if readonly else "", tree.mount_options) if o)
    if not options:
        g.mount(device, mountpoint)
    elif options == "ro":
        g.mount_ro(device, mountpoint)
    else:
        g.mount_options(options, device, mountpoint)


def os_roots(g: Guest) -> list[str]:
    """inspect_os's roots, less the btrfs snapshots of a root: a snapshot (snapper's .snapshots/N/snapshot) holds
    a copy of the root's fstab, which mounts the root's subvolume at /, not the snapshot itself."""
    roots = [str(r) for r in g.inspect_os()]
    if len(roots) < 2:
        return roots
    return [r for r in roots if str(g.inspect_get_mountpoints(r).get("/", r)) == r]
