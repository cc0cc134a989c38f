"""Phase 2's text edits: GRUB console, MAC bindings, getty names."""

from __future__ import annotations

import pytest

from imgclone.phases.clonefiles import getty_for, mentions_mac, with_console, without_mac_lines

GRUB = """\
GRUB_DEFAULT=0
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,9600 net.ifnames=0"
GRUB_TIMEOUT=1
"""


def test_console_replaces_every_console_argument() -> None:
    out = with_console(GRUB, "ttyS1,115200")
    assert 'GRUB_CMDLINE_LINUX="net.ifnames=0 console=ttyS1,115200"\n' in out
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"' in out, "the _DEFAULT line is not GRUB_CMDLINE_LINUX"
    assert out.startswith("GRUB_DEFAULT=0\n") and out.endswith("GRUB_TIMEOUT=1\n")


def test_console_added_when_no_cmdline_line() -> None:
    assert with_console("GRUB_TIMEOUT=1", "tty0") == 'GRUB_TIMEOUT=1\nGRUB_CMDLINE_LINUX="console=tty0"\n'
    assert with_console("", "tty0") == 'GRUB_CMDLINE_LINUX="console=tty0"\n'


def test_console_with_unquoted_and_empty_values() -> None:
    assert with_console("GRUB_CMDLINE_LINUX=\n", "ttyS0") == 'GRUB_CMDLINE_LINUX="console=ttyS0"\n'
    assert with_console("GRUB_CMDLINE_LINUX=''\n", "ttyS0") == 'GRUB_CMDLINE_LINUX="console=ttyS0"\n'


@pytest.mark.parametrize(
    ("console", "getty"),
    [("ttyS0,115200", "serial-getty@ttyS0.service"), ("/dev/ttyAMA0", "serial-getty@ttyAMA0.service"),
     ("hvc0", "serial-getty@hvc0.service"), ("tty0", None), ("tty1", None)],
)  # fmt: skip
def test_getty_only_for_serial_consoles(console: str, getty: str | None) -> None:
    assert getty_for(console) == getty


def test_mac_bindings_removed_from_keyfiles_and_ifcfg() -> None:
    nm = "[connection]\nid=eth0\n[ethernet]\nmac-address=52:54:00:12:34:56\nmtu=1500\n"
    assert without_mac_lines(nm) == "[connection]\nid=eth0\n[ethernet]\nmtu=1500\n"
    ifcfg = 'DEVICE=eth0\nHWADDR="52:54:00:12:34:56"\nMACADDR=52:54:00:aa:bb:cc\nONBOOT=yes'
    assert without_mac_lines(ifcfg) == "DEVICE=eth0\nONBOOT=yes"
    assert without_mac_lines("cloned-mac-address=stable\n") == "cloned-mac-address=stable\n"


def test_networkd_and_netplan_mac_matches_are_only_reported() -> None:
    assert mentions_mac("[Match]\nMACAddress=52:54:00:12:34:56\n")
    assert mentions_mac("ethernets:\n  lan:\n    match:\n      macaddress: 52:54:00:12:34:56\n")
    assert not mentions_mac("[Match]\nName=eth0\n")
