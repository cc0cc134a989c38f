"""How a system boots, as data: the boot facts a capture records in the manifest and Phase 1 in the journal.

probe/bootfacts.py finds them (on this host or in an image); Phase 3 installs the boot loader for the firmware
they name, and the boot order follows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class BootFacts:
    firmware: str  # "bios", "uefi", or "uefi+bios" when boot loaders for both are installed
    bootloader: str  # "grub2", "systemd-boot" or "none"
    cmdline: str  # kernel parameters the boot loader configuration passes
    root_device: str  # as the system names it: fstab's spec for "/" (guest), findmnt's source (host)

    def to_dict(self) -> dict[str, str]:
        """The facts as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> BootFacts | None:
        """The facts a manifest or journal recorded; None when it recorded none. Missing fields read as ""."""
        if not isinstance(d, Mapping) or not d:
            return None
        return cls(**{k: str(d.get(k) or "") for k in ("firmware", "bootloader", "cmdline", "root_device")})
