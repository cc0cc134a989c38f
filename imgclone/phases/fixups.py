"""After restore: the clone's own files that name filesystems follow the new UUIDs and types."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from imgclone.fs.features import EXT_TYPES
from imgclone.fs.space import portable_options
from imgclone.guest.interface import Guest
from imgclone.model.layout import Filesystem, Layout, Partition, Swap

if TYPE_CHECKING:
    from imgclone.plan.types import Plan

log = logging.getLogger("imgclone")

# files that may name filesystems or swap by UUID or PARTUUID (fstab is also rewritten for types)
UUID_FILES = ("/etc/crypttab", "/etc/initramfs-tools/conf.d/resume", "/etc/default/grub")


def uuid_map(plan: Plan, new: dict[str, str]) -> dict[str, str]:
    """Source UUID → new UUID, for every filesystem and swap whose UUID changed."""
    olds = {f.id: f.uuid for f in plan.source.filesystems} | {s.id: s.uuid for s in plan.source.swaps}
    return {old: new[i] for i, old in olds.items() if old and new.get(i) and new[i].lower() != old.lower()}


def _partition_holding(layout: Layout, obj_id: str) -> Partition | None:
    """The partition a filesystem or swap of layout is on; None for an LV, a whole disk or an id not there."""
    try:
        holder = layout.get(obj_id)
        device = layout.get(holder.device) if isinstance(holder, Filesystem | Swap) else None
    except KeyError:
        return None
    return device if isinstance(device, Partition) else None


def partuuid_map(plan: Plan, new: dict[str, str]) -> dict[str, str]:
    """Source PARTUUID → the clone's (new: target partition id → its PARTUUID), for each partition that holds a
    filesystem or swap, matched through that filesystem or swap (the plan numbers the clone's partitions anew):
    an fstab or kernel command line that names PARTUUID= follows the new partition table."""
    out = {}
    for obj_id in [f.id for f in plan.source.filesystems] + [s.id for s in plan.source.swaps]:
        src, dst = _partition_holding(plan.source, obj_id), _partition_holding(plan.target, obj_id)
        if src is None or dst is None or not src.uuid or not new.get(dst.id):
            continue
        if new[dst.id].lower() != src.uuid.lower():
            out[src.uuid] = new[dst.id]
    return out


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


def rewrite_references(g: Guest, plan: Plan, new_uuids: dict[str, str], partuuids: dict[str, str]) -> None:
    """Apply the rewrites inside the mounted clone (partuuids: target partition id → the clone's PARTUUID)."""
    if plan.target.filesystem_at("/") is None:
        return
    mapping = uuid_map(plan, new_uuids) | partuuid_map(plan, partuuids)
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
