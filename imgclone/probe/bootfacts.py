"""How a system boots: firmware, boot loader, kernel command line and root device.

`boot_facts_guest` reads them from an image's filesystems mounted read-only in an
appliance (probe_guest.mount_sources); `boot_facts_host` from the running system. The
parsers of /etc/default/grub and grub.cfg are pure functions.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from imgclone.errors import GuestfsError
from imgclone.guest.interface import Guest
from imgclone.host.run import HOST, Runner
from imgclone.model.boot import BootFacts
from imgclone.model.layout import Layout, PartFlag, TableType
from imgclone.probe.guest_parsers import parse_fstab

GRUB_CFGS = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")
GRUB_BIOS_DIRS = ("/boot/grub/i386-pc", "/boot/grub2/i386-pc")
SYSTEMD_BOOT_CONFS = ("/boot/efi/loader/loader.conf", "/efi/loader/loader.conf", "/boot/loader/loader.conf")
LINUX_COMMANDS = ("linux", "linuxefi", "linux16")


# -- pure helpers --------------------------------------------------------------------------------
def default_grub_cmdline(text: str) -> str | None:
    """GRUB_CMDLINE_LINUX then GRUB_CMDLINE_LINUX_DEFAULT from /etc/default/grub, None when neither is set."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"\s*(?:export\s+)?(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)=(.*)$", line)
        if not m:
            continue
        try:
            words = shlex.split(m.group(2), comments=True)
        except ValueError:
            continue
        values[m.group(1)] = " ".join(words)
    if not values:
        return None
    parts = (values.get("GRUB_CMDLINE_LINUX", ""), values.get("GRUB_CMDLINE_LINUX_DEFAULT", ""))
    return " ".join(p for p in parts if p)


def grub_cfg_cmdline(text: str) -> str | None:
    """Parameters of the first `linux` command in a grub.cfg (the kernel path left out), else None."""
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in LINUX_COMMANDS:
            return " ".join(words[2:])
    return None


def fstab_root(text: str) -> str:
    """The fstab spec mounted at "/", "" when there is none."""
    return next((e.spec for e in parse_fstab(text) if e.file == "/"), "")


def decide_firmware(*, esp: bool, efi_loader: bool, bios_disk: bool, bios_loader: bool) -> str:
    """Firmware from what is installed (loader files), falling back on the partitioning."""
    uefi = esp and efi_loader
    bios = bios_disk and bios_loader
    if uefi and bios:
        return "uefi+bios"
    if uefi or bios:
        return "uefi" if uefi else "bios"
    return "uefi" if esp else "bios"


def is_efi_loader(path: str) -> bool:
    """True for an EFI binary of GRUB or shim below EFI/ on an ESP (path relative to the ESP)."""
    return re.fullmatch(r"/?efi/[^/]+/(grub|shim)[^/]*\.efi", path.lower()) is not None


def is_systemd_boot(path: str) -> bool:
    """True for systemd-boot's EFI binary (path relative to the ESP)."""
    return re.fullmatch(r"/?efi/(systemd|boot)/systemd-boot[^/]*\.efi", path.lower()) is not None


# -- the guest -------------------------------------------------------------------------------------
def _guest_text(g: Guest, path: str) -> str | None:
    try:
        if not g.is_file(path):
            return None
        return bytes(g.read_file(path)).decode("utf-8", "replace")
    except GuestfsError:
        return None


def _guest_esp_files(g: Guest, layout: Layout) -> list[str]:
    esp_parts = {p.id for p in layout.partitions if PartFlag.ESP in p.flags}
    mps = [f.mountpoint for f in layout.filesystems if f.device in esp_parts] or ["/boot/efi"]
    files: list[str] = []
    for mp in mps:
        if g.is_dir(mp):
            files += [str(f) for f in g.find(mp)]
    return files


def _guest_mbr_grub(g: Guest, layout: Layout) -> bool:
    for disk in layout.disks:
        if disk.table == TableType.NONE:
            continue
        try:
            if b"GRUB" in bytes(g.pread_device(disk.path, 512, 0)):
                return True
        except GuestfsError:
            continue
    return False


def _guest_cmdline(g: Guest) -> str:
    text = _guest_text(g, "/etc/default/grub")
    cmdline = default_grub_cmdline(text) if text is not None else None
    for path in ("/etc/kernel/cmdline", *GRUB_CFGS):
        if cmdline is not None:
            break
        text = _guest_text(g, path)
        if text is not None:
            cmdline = text.strip() if path == "/etc/kernel/cmdline" else grub_cfg_cmdline(text)
    return cmdline or ""


def boot_facts_guest(g: Guest, layout: Layout) -> BootFacts:
    """Boot facts of an image whose filesystems are mounted read-only at their mount points."""
    esp_files = _guest_esp_files(g, layout)
    efi_loader = any(is_efi_loader(f) for f in esp_files)
    grub_bios = any(g.is_dir(d) for d in GRUB_BIOS_DIRS)
    bios_disk = any(PartFlag.BIOS_GRUB in p.flags for p in layout.partitions) or any(
        d.table == TableType.MSDOS for d in layout.disks
    )
    bios_loader = bios_disk and (grub_bios or _guest_mbr_grub(g, layout))
    firmware = decide_firmware(
        esp=any(PartFlag.ESP in p.flags for p in layout.partitions),
        efi_loader=efi_loader,
        bios_disk=bios_disk,
        bios_loader=bios_loader,
    )
    if efi_loader or bios_loader or any(g.is_file(c) for c in GRUB_CFGS):
        bootloader = "grub2"
    elif any(is_systemd_boot(f) for f in esp_files) or any(g.is_file(c) for c in SYSTEMD_BOOT_CONFS):
        bootloader = "systemd-boot"
    else:
        bootloader = "none"
    fstab = _guest_text(g, "/etc/fstab") or ""
    return BootFacts(firmware, bootloader, _guest_cmdline(g), fstab_root(fstab))


# -- the running host ------------------------------------------------------------------------------
def _host_bootloader(sysroot: Path) -> str:
    def exists(path: str) -> bool:
        return (sysroot / path.lstrip("/")).exists()

    if any(exists(c) for c in GRUB_CFGS):
        return "grub2"
    if any(exists(c) for c in SYSTEMD_BOOT_CONFS):
        return "systemd-boot"
    return "none"


def boot_facts_host(runner: Runner = HOST, *, sysroot: Path = Path("/")) -> BootFacts:
    """Boot facts of the running system (sysroot lets tests point at a fake tree)."""
    firmware = "uefi" if (sysroot / "sys/firmware/efi").exists() else "bios"
    try:
        cmdline = (sysroot / "proc/cmdline").read_text(errors="replace").strip()
    except OSError:
        cmdline = ""
    res = runner.run(["findmnt", "-n", "-o", "SOURCE", "/"], check=False)
    lines = res.text.splitlines() if res.returncode == 0 else []
    root = re.sub(r"\[.*\]$", "", lines[0].strip()) if lines else ""  # btrfs: /dev/sda2[/@]
    return BootFacts(firmware, _host_bootloader(sysroot), cmdline, root)
