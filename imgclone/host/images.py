"""Disk images to read (a capture's or a copy's source, a clone to verify or boot): their format and size.

qemu-img decides the format, never probing inside the appliance and never the file's first bytes alone: a vmdk
or vdi read as raw would look like a disk without partitions. raw and qcow2 are the formats imgclone opens.
"""

from __future__ import annotations

import os

from imgclone.errors import UsageError
from imgclone.host import targets


def image_format(path: str) -> str:
    """qcow2 or raw, as qemu-img sees it (never left to probing inside the appliance)."""
    return image_info(path)[0]


def image_info(path: str) -> tuple[str, int]:
    """An image's format (qcow2 or raw, else refused) and virtual size, as qemu-img sees them; a block device that
    is mounted is refused (targets.check_source)."""
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such image or device")
    targets.check_source(path)
    fmt, size = targets.qemu_info(path)
    if fmt not in targets.IMAGE_FORMATS:
        raise UsageError(f"{path}: image format {fmt} is not supported", "convert it: qemu-img convert -O qcow2")
    return fmt, size
