"""Restore targets: disk images (created when absent) and block devices, and the refusals.

imgclone never writes to a disk that was not named with -d, and never to one that holds
LVM physical volumes, partitions or a filesystem, or part of the source — unless --force;
never, even then, to one that is mounted, to the disk of the running root, or to an image
file that backs a loop device.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from imgclone.errors import UsageError
from imgclone.host.run import HOST, Runner

IMAGE_FORMATS = ("raw", "qcow2")


@dataclass(frozen=True)
class TargetDisk:
    """One -d argument, resolved."""

    path: str  # absolute host path
    kind: str  # "image" or "device"
    format: str  # "raw" or "qcow2"
    size: int  # bytes; 0 for an image that does not exist yet
    exists: bool
    sector_size: int = 512


def split_targets(values: list[str]) -> list[str]:
    """-d takes several targets, repeated or as one quoted space-separated list (as AIX)."""
    out: list[str] = []
    for v in values:
        out.extend(v.split())
    if not out:
        raise UsageError("-d: no target disk given")
    dupes = {p for p in out if out.count(p) > 1}
    if dupes:
        raise UsageError(f"-d: target given twice: {', '.join(sorted(dupes))}")
    return out


def _image(path: str, runner: Runner, force: bool) -> TargetDisk:
    if not os.path.exists(path):
        if not os.path.isdir(os.path.dirname(path)):
            raise UsageError(f"-d {path}: directory {os.path.dirname(path)} does not exist")
        fmt = "qcow2" if path.endswith(".qcow2") else "raw"
        return TargetDisk(path, "image", fmt, 0, False)
    loops = loop_devices_of(path)
    if loops:
        raise UsageError(f"-d {path}: backs loop device {', '.join(loops)}, which the kernel may be using",
                         f"detach it first (losetup -d {loops[0]}); --force does not override this")  # fmt: skip
    fmt, size = qemu_info(path, runner)
    if fmt not in IMAGE_FORMATS:
        raise UsageError(f"-d {path}: image format {fmt} is not supported (raw or qcow2)")
    # a raw image's signatures are read on the host, before an appliance starts (qcow2: check_targets, inside)
    signature = _signature(path, runner) if fmt == "raw" and not force else ""
    if signature:
        raise UsageError(f"-d {path}: {signature}", "refusing to overwrite it; --force if you are sure")
    return TargetDisk(path, "image", fmt, size, True)


def qemu_info(path: str, runner: Runner = HOST) -> tuple[str, int]:
    """An image file's format and virtual size as qemu-img sees them (any format: the caller refuses)."""
    info = json.loads(runner.run(["qemu-img", "info", "--output=json", path]).text)
    return str(info.get("format", "raw")), int(info.get("virtual-size", 0))


def loop_devices_of(path: str, sys_block: Path = Path("/sys/block")) -> list[str]:
    """The loop devices whose backing file is path (as the kernel reports it in sysfs)."""
    real = os.path.realpath(path)
    out = []
    for f in sorted(sys_block.glob("loop*/loop/backing_file")):
        try:
            backing = f.read_text().strip().removesuffix(" (deleted)")
        except OSError:
            continue
        if os.path.realpath(backing) == real:
            out.append(f"/dev/{f.parent.parent.name}")
    return out


def _lsblk(dev: str, runner: Runner, name: str = "-d ") -> dict[str, object]:
    res = runner.run(["lsblk", "--json", "--bytes", "--paths", "-o", "NAME,TYPE,SIZE,LOG-SEC,MOUNTPOINTS,FSTYPE", dev])
    devices = json.loads(res.text).get("blockdevices", [])
    if not devices:
        raise UsageError(f"{name}{dev}: lsblk does not know this device")
    return dict(devices[0])


def _mounted(nodes: list[dict[str, object]]) -> list[str]:
    return [str(n["name"]) for n in nodes if any(m for m in (n.get("mountpoints") or []))]  # type: ignore[attr-defined]


def check_source(path: str, runner: Runner = HOST) -> None:
    """Refuse a source block device that is mounted, or holds a mounted partition or LV: an offline capture or a
    copy reads its blocks, and the kernel keeps a mounted filesystem's state in memory, not all on the disk. An
    image file is not checked."""
    if stat.S_ISBLK(os.stat(path).st_mode):
        refuse_mounted_source(path, runner)


def refuse_mounted_source(path: str, runner: Runner = HOST) -> None:
    """check_source for a path known to be a block device."""
    mounted = _mounted(_walk(_lsblk(path, runner, name="")))
    if mounted:
        raise UsageError(f"{path}: is mounted ({', '.join(mounted)}): its blocks on the disk are not what the "
                         "mounted filesystems hold", "unmount it first, or capture the mounted filesystems: "
                         "`imgclone capture` (the running system) or `imgclone capture --mount DIR`")  # fmt: skip


def _walk(node: dict[str, object]) -> list[dict[str, object]]:
    out = [node]
    for child in node.get("children", []) or []:  # type: ignore[attr-defined]
        out.extend(_walk(child))
    return out


def _device(path: str, runner: Runner, force: bool, protected: dict[str, str]) -> TargetDisk:
    info = _lsblk(path, runner)
    size = int(str(info.get("size") or 0))
    if size == 0:  # the plan would take 0 for "no size yet" and size it as an image to create
        raise UsageError(f"-d {path}: has no capacity (0 bytes: no medium, or a loop device on an empty file)",
                         "name a disk with room for the clone")  # fmt: skip
    nodes = _walk(info)
    for name, why in protected.items():
        if any(n.get("name") == name for n in nodes):
            if why == "running root" or not force:
                raise UsageError(f"-d {path}: holds {why} ({name})", None if why == "running root" else "--force")
    mounted = _mounted(nodes)
    if mounted:  # the kernel writes a mounted filesystem behind our back: --force cannot make that safe
        raise UsageError(f"-d {path}: is mounted ({', '.join(mounted)})", "unmount it first; --force does not "
                         "override this")  # fmt: skip
    problems = []
    signature = _signature(path, runner)
    if signature:
        problems.append(signature)
    if any(n.get("fstype") == "LVM2_member" for n in nodes) and "LVM" not in signature:
        problems.append("holds an LVM physical volume (it belongs to a volume group)")
    if len(nodes) > 1 and "partition table" not in signature:
        problems.append("holds partitions")
    if problems and not force:
        raise UsageError(f"-d {path}: {' and '.join(problems)}", "refusing to overwrite it; --force if you are sure")
    return TargetDisk(path, "device", "raw", size, True, int(str(info.get("log-sec", 512))))


def _signature(dev: str, runner: Runner) -> str:
    """What blkid finds on the device itself (without udev, lsblk may not know)."""
    res = runner.run(["blkid", "-p", "-o", "export", dev], check=False)
    info = dict(line.split("=", 1) for line in res.text.splitlines() if "=" in line)
    if "PTTYPE" in info:
        return f"holds a {info['PTTYPE']} partition table"
    if info.get("TYPE") == "LVM2_member":
        return "holds an LVM physical volume (it belongs to a volume group)"
    if "TYPE" in info:
        return f"holds a {info['TYPE']} filesystem"
    return ""


def resolve(paths: list[str], *, force: bool = False, protected: dict[str, str] | None = None,
            runner: Runner = HOST) -> list[TargetDisk]:  # fmt: skip
    """Resolve and check every target before anything is written.

    `protected` maps device paths (disks and partitions of the running root, of the source)
    to what they hold, e.g. {"/dev/sda": "running root"}.
    """
    out = []
    for p in paths:
        path = os.path.abspath(p)
        if path.startswith("/dev/"):
            if not os.path.exists(path) or not stat.S_ISBLK(os.stat(path).st_mode):
                raise UsageError(f"-d {p}: not a block device")
            out.append(_device(os.path.realpath(path), runner, force, protected or {}))
        elif os.path.exists(path) and not os.path.isfile(path):
            raise UsageError(f"-d {p}: neither a disk image file nor a block device")
        else:
            out.append(_image(path, runner, force))
    return out


def running_root_disks(runner: Runner = HOST) -> dict[str, str]:
    """The block devices that hold the running / (never a target, even with --force)."""
    res = runner.run(["findmnt", "-n", "-o", "SOURCE", "/"], check=False)
    src = res.text.strip()
    if not src.startswith("/dev/"):
        return {}
    out = {src: "running root"}
    parents = runner.run(["lsblk", "-n", "-s", "-p", "-o", "NAME", "-l", src], check=False).text.split()
    for p in parents:
        out[p] = "running root"
    return out


def create_image(t: TargetDisk, size: int, runner: Runner = HOST) -> TargetDisk:
    """Create a sparse image of `size` bytes (qcow2 for .qcow2, else raw)."""
    runner.run(["qemu-img", "create", "-q", "-f", t.format, t.path, str(size)])
    return TargetDisk(t.path, t.kind, t.format, size, True, t.sector_size)


def remove_created(targets: list[TargetDisk]) -> None:
    """Undo create_image for images this run created (a failed restore leaves no new files)."""
    for t in targets:
        Path(t.path).unlink(missing_ok=True)
