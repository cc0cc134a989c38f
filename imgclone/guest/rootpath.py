"""A path of the clone, as a path of this host: the clone's tree is mounted at a root directory (/alt_inst), and
its paths and symbolic links mean what they would mean with that root as "/".

A link in the clone is often absolute (/etc/resolv.conf → /run/systemd/resolve/stub-resolv.conf): followed by the
host's kernel it would name the host's own file. `within` follows each link itself, an absolute one from the root,
and ".." never climbs above the root, as the kernel resolves paths in a chroot (openat2's RESOLVE_IN_ROOT).
"""

from __future__ import annotations

import os

from imgclone.errors import GuestfsError

MAX_LINKS = 40  # the kernel's limit of links followed in one lookup (ELOOP)


def _names(path: str) -> list[str]:
    return [n for n in path.split("/") if n not in ("", ".")]


def within(root: str, path: str, *, follow: bool = True) -> str:
    """The host path of the clone's `path` (absolute, inside the clone); follow: its last name is followed too
    when it is a link (as open(2) does; lstat(2) does not)."""
    if not path.startswith("/"):
        raise GuestfsError(f"{path}: a path in the clone must be absolute")
    todo, done, links = _names(path), list[str](), 0
    while todo:
        name = todo.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        here = os.path.join(root, *done, name)
        if (todo or follow) and os.path.islink(here):
            links += 1
            if links > MAX_LINKS:
                raise GuestfsError(f"{path}: too many levels of symbolic links")
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            todo = _names(target) + todo
            continue
        done.append(name)
    return os.path.join(root, *done)
