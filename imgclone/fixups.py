"""After restore: the clone's own files that name filesystems follow the new UUIDs and types."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .guest import Guest
from .space import EXT_TYPES, portable_options

if TYPE_CHECKING:
    from .plan import Plan

log = logging.getLogger("imgclone")

# files that may name filesystems or swap by UUID (fstab is also rewritten for types)
UUID_FILES = ("/etc/crypttab", "/etc/initramfs-tools/conf.d/resume", "/etc/default/grub")


def uuid_map(plan: Plan, new: dict[str, str]) -> dict[str, str]:
    """Source UUID → new UUID, for every filesystem and swap whose UUID changed."""
    olds = {f.id: f.uuid for f in plan.source.filesystems} | {s.id: s.uuid for s in plan.source.swaps}
    return {old: new[i] for i, old in olds.items() if old and new.get(i) and new[i].lower() != old.lower()}


def replace_uuids(text: str, mapping: dict[str, str]) -> str:
    """Every occurrence of an old UUID (any case) replaced by the new one."""
    for old, new in mapping.items():
        for variant in {old, old.lower(), old.upper()}:
            text = text.replace(variant, new)
    return text


def rewrite_fstab(text: str, mapping: dict[str, str], types: dict[str, str]) -> str:
    """fstab with new UUIDs; for a mount point whose type changed, the new type and only options it accepts."""
    out = []
    for line in text.splitlines(keepends=True):
        fields = line.split()
        if not fields or fields[0].startswith("#") or len(fields) < 3:
            out.append(line)
            continue
        fields[0] = replace_uuids(fields[0], mapping)
        if fields[1] in types and fields[2] != types[fields[1]]:
            same_family = {fields[2], types[fields[1]]} <= EXT_TYPES  # -T: ext3's options all apply to ext4
            fields[2] = types[fields[1]]
            if len(fields) > 3 and not same_family:
                fields[3] = portable_options(fields[3])[0]
            if len(fields) > 5 and fields[2] == "xfs":
                fields[5] = "0"  # fsck.xfs does nothing at boot
        out.append("\t".join(fields) + "\n")
    return "".join(out)


def rewrite_references(g: Guest, plan: Plan, new_uuids: dict[str, str]) -> None:
    """Apply the rewrites inside the mounted clone."""
    if plan.target.filesystem_at("/") is None:
        return
    mapping = uuid_map(plan, new_uuids)
    src_types = {f.mountpoint: str(f.type) for f in plan.source.filesystems}
    types = {f.mountpoint: str(f.type) for f in plan.target.filesystems if src_types.get(f.mountpoint) != str(f.type)}
    if g.is_file("/etc/fstab"):
        old = g.read_file("/etc/fstab").decode("utf-8", "surrogateescape")
        g.write("/etc/fstab", rewrite_fstab(old, mapping, types).encode("utf-8", "surrogateescape"))
    else:
        log.warning("the clone has no /etc/fstab: nothing to rewrite")
    for path in UUID_FILES:
        if mapping and g.is_file(path):
            old = g.read_file(path).decode("utf-8", "surrogateescape")
            new = replace_uuids(old, mapping)
            if new != old:
                g.write(path, new.encode("utf-8", "surrogateescape"))
