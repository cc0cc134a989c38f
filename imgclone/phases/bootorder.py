"""After Phase 3: the boot order (AIX's bootlist) and -r.

Images: nothing to set. A disk of this host on a UEFI host: a boot entry for the clone's
removable-path loader and BootNext to it (efibootmgr), so the next boot tries the clone
once and later boots fall back to the old order, as a failed clone should: the entry is made
with --create-only, since --create would also put it first in BootOrder. An entry of the same
label left by an earlier run is replaced, not duplicated. A BIOS host has no boot order an OS
can set: say which disk to choose.
"""

from __future__ import annotations

import os
import re

from imgclone.errors import ImgcloneError
from imgclone.host.run import HOST, Runner
from imgclone.model.journal import Journal
from imgclone.model.layout import Layout, PartFlag

LOADER = "\\EFI\\BOOT\\BOOTX64.EFI"


def host_firmware() -> str:
    return "uefi" if os.path.isdir("/sys/firmware/efi") else "bios"


def set_boot_order(journal: Journal, *, runner: Runner = HOST, firmware: str | None = None) -> list[str]:
    """Make the clone the next boot when it is a disk of this host; return what was done or what to do."""
    devices = [t.path for t in journal.targets if t.kind == "device"]
    if not devices:
        return ["boot order: the targets are images, nothing to set (imgclone boot-test boots them)"]
    disk = devices[0]
    host = firmware or host_firmware()
    clone = journal.firmware
    if host == "bios":
        return [f"boot order: this host boots with BIOS; choose {disk} in its boot menu to boot the clone"]
    if "uefi" not in clone:
        return [f"boot order: the clone boots with BIOS but this host with UEFI; choose {disk} in the firmware's "
                "legacy (CSM) boot menu"]  # fmt: skip
    esp = _esp_number(journal.built)
    label = f"imgclone clone on {os.path.basename(disk)}"
    for old in entries(runner.run(["efibootmgr"]).text, label):
        runner.run(["efibootmgr", "--quiet", "--bootnum", old, "--delete-bootnum"])
    out = runner.run(["efibootmgr", "--create-only", "--disk", disk, "--part", str(esp), "--label", label,
                      "--loader", LOADER]).text  # fmt: skip
    entry = parse_entry(out, label)
    runner.run(["efibootmgr", "--bootnext", entry])
    return [f"boot order: created UEFI entry Boot{entry} '{label}' and set BootNext to it"]


def _esp_number(layout: Layout) -> int:
    disk0 = layout.disks[0].id
    for p in layout.partitions:
        if p.disk == disk0 and PartFlag.ESP in p.flags:
            return p.number
    raise ImgcloneError("the clone's first disk has no ESP for a UEFI boot entry", "-B leaves the boot order alone")


def entries(efibootmgr_output: str, label: str) -> list[str]:
    """The BootXXXX numbers of the entries with this label, in the order efibootmgr lists them."""
    return re.findall(rf"^Boot([0-9A-Fa-f]{{4}})\*? {re.escape(label)}(?:\t|\s*$)", efibootmgr_output, re.MULTILINE)


def parse_entry(efibootmgr_output: str, label: str) -> str:
    """The BootXXXX number efibootmgr gave the entry with this label (the last one, if several)."""
    found = entries(efibootmgr_output, label)
    if not found:
        raise ImgcloneError(f"efibootmgr did not list the new entry '{label}'")
    return str(found[-1])


def reboot(runner: Runner = HOST) -> None:
    """-r: reboot into the clone."""
    runner.run(["systemctl", "reboot"])
