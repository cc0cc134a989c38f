"""Where a command's phases work on the clone: on this host (guest/onhost.py) or in the libguestfs appliance.

`--via host|appliance|auto` (auto by default). `choose` is a pure function of what was asked, the targets, the
layout to build and what this host has (`HostAbilities`, read once by `abilities`):

- appliance: asked for; always possible.
- host: asked for; refused in one line, before anything is written, when this process is not root, a target is
  an image the host cannot attach (qcow2), or the plan needs what this host lacks (device-mapper for LVM, a
  filesystem its kernel does not know, a tool not installed).
- auto: the host when every target is a block device and the host has everything the plan needs; else the
  appliance. Images stay with the appliance: on an image it is the way libguestfs keeps an untrusted filesystem
  away from the host's kernel. The choice says why (`--dry-run` too).
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from imgclone.errors import UsageError
from imgclone.model.layout import Layout

VIAS = ("auto", "host", "appliance")
ALWAYS = ("parted", "sfdisk", "partx", "blkid", "blockdev", "wipefs", "mkfs", "mount", "umount", "tar", "zstd",
          "chroot", "unshare")  # fmt: skip
FS_TOOLS = {"ext2": ("mke2fs", "tune2fs"), "ext3": ("mke2fs", "tune2fs"), "ext4": ("mke2fs", "tune2fs"),
            "xfs": ("mkfs.xfs", "xfs_admin"), "vfat": ("mkfs.vfat", "fatlabel"), "btrfs": ("mkfs.btrfs", "btrfstune"),
            "swap": ("mkswap", "swaplabel")}  # fmt: skip
APPLIANCE_HINT = "--via appliance or --via auto work through the libguestfs appliance"
KERNEL_FS = {"ext2": "ext4", "ext3": "ext4", "vfat": "vfat"}  # the kernel driver that mounts the type


@dataclass(frozen=True)
class Drive:
    """A target as the choice sees it: its path, its format, whether it is a block device."""

    path: str
    format: str
    block: bool


@dataclass(frozen=True)
class HostAbilities:
    root: bool
    device_mapper: bool
    filesystems: frozenset[str]  # what the kernel mounts (loaded or loadable drivers)
    tools: frozenset[str]  # the programs found


@dataclass(frozen=True)
class Choice:
    via: str  # "host" or "appliance"
    reason: str


def drives_of(targets: Sequence[tuple[str, str]]) -> list[Drive]:
    return [Drive(path, fmt, stat.S_ISBLK(os.stat(path).st_mode)) for path, fmt in targets]


def needs(layout: Layout) -> tuple[list[str], list[str], bool]:
    """What building and mounting the layout takes: the filesystem types (for the kernel), the programs, LVM."""
    types = sorted({str(f.type) for f in layout.filesystems})
    tools = [*ALWAYS, *(t for kind in [*types, *(["swap"] if layout.swaps else [])] for t in FS_TOOLS.get(kind, ()))]
    lvm = bool(layout.vgs)
    return types, [*tools, *(["lvm"] if lvm else [])], lvm


def abilities(types: Iterable[str], tools: Iterable[str], proc: str = "/proc", modules: str = "/lib/modules"
              ) -> HostAbilities:  # fmt: skip
    """What this host has of `types` and `tools`: a filesystem (and device-mapper) the kernel has, or has as a
    module it can load."""
    with open(f"{proc}/filesystems") as f:
        known = {line.split()[-1] for line in f if line.strip()}
    mods = os.path.join(modules, os.uname().release, "kernel")
    fs = {t for t in types if KERNEL_FS.get(t, t) in known or _module(f"{mods}/fs", KERNEL_FS.get(t, t))}
    with open(f"{proc}/misc") as f:  # a loaded driver has its control device listed there
        dm = any(line.split()[-1] == "device-mapper" for line in f if line.strip())
    dm = dm or _module(f"{mods}/drivers/md", "dm-mod")
    return HostAbilities(os.geteuid() == 0, dm, frozenset(fs), frozenset(t for t in tools if shutil.which(t)))


def _module(base: str, name: str) -> bool:
    for _, _, files in os.walk(base):
        if any(f.split(".ko")[0] == name for f in files):
            return True
    return False


def lacking(layout: Layout, host: HostAbilities) -> list[str]:
    """What the plan needs that this host lacks, each said as a short phrase."""
    types, tools, lvm = needs(layout)
    missing = ["device-mapper (for the plan's LVM)"] if lvm and not host.device_mapper else []
    missing += [f"{t} in its kernel" for t in types if t not in host.filesystems]
    missing += [f"the program {t}" for t in tools if t not in host.tools]
    return missing


def choose(asked: str, drives: Sequence[Drive], layout: Layout, host: HostAbilities) -> Choice:
    """Where the phases run (see the module's text); a refused `--via host` is a UsageError."""
    if asked not in VIAS:
        raise UsageError(f"--via {asked}: expected host, appliance or auto")
    if asked == "appliance":
        return Choice("appliance", "--via appliance")
    why_not = _why_not_host(asked, drives, layout, host)
    if why_not and asked == "host":
        raise UsageError(f"--via host: {why_not}", APPLIANCE_HINT)
    if why_not:
        return Choice("appliance", why_not)
    if asked == "host":
        return Choice("host", "--via host")
    return Choice("host", "the targets are block devices and this host has what the plan needs")


def _why_not_host(asked: str, drives: Sequence[Drive], layout: Layout, host: HostAbilities) -> str:
    if not host.root:
        return "not root (the host's tools write to the disks)"
    for d in drives:
        if not d.block and asked == "auto":
            return f"{d.path} is an image: images stay with the appliance (--via host attaches a raw one)"
        if not d.block and d.format != "raw":
            return f"{d.path} is a {d.format} image; the host attaches block devices and raw images only"
    missing = lacking(layout, host)
    return "this host lacks " + ", ".join(missing) if missing else ""
