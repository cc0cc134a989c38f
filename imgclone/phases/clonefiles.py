"""Files Phase 2 writes into the clone, as pure text: units, GRUB defaults, network config edits."""

from __future__ import annotations

import re
import shlex

FIRSTBOOT_SCRIPT = "/usr/local/lib/imgclone/firstboot"
FIRSTBOOT_UNIT = "imgclone-firstboot.service"
SSHKEYS_UNIT = "imgclone-sshkeys.service"
UNIT_DIR = "/etc/systemd/system"

# -x: once, after every filesystem of fstab is mounted (local-fs.target), before multi-user
# is reached; output goes to the journal and the console; then the unit disables itself and
# the script is kept as firstboot.done for the record.
FIRSTBOOT_UNIT_TEXT = f"""\
# Written by imgclone Phase 2 (alt_disk_copy -x): runs once on the clone's first boot.
[Unit]
Description=imgclone first-boot script
After=local-fs.target network.target
Before=multi-user.target
ConditionPathExists={FIRSTBOOT_SCRIPT}

[Service]
Type=oneshot
ExecStart={FIRSTBOOT_SCRIPT}
ExecStopPost=/bin/mv -f {FIRSTBOOT_SCRIPT} {FIRSTBOOT_SCRIPT}.done
ExecStopPost=/bin/systemctl --no-reload disable {FIRSTBOOT_UNIT}
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=30min

[Install]
WantedBy=multi-user.target
"""

# -O: ssh host keys were removed; make new ones before sshd starts (Debian does not by itself).
SSHKEYS_UNIT_TEXT = f"""\
# Written by imgclone Phase 2 (alt_disk_copy -O): new ssh host keys on the first boot.
[Unit]
Description=imgclone: generate ssh host keys
Before=ssh.service sshd.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
ExecStopPost=/bin/systemctl --no-reload disable {SSHKEYS_UNIT}

[Install]
WantedBy=multi-user.target
"""

# -O: files that tie the system to one machine's hardware or identity.
MACHINE_FILES = (
    "/etc/udev/rules.d/70-persistent-net.rules",
    "/var/lib/systemd/random-seed",
    "/var/lib/urandom/random-seed",
    "/var/lib/dbus/machine-id",
    "/var/lib/systemd/credential.secret",
)
SSH_HOST_KEYS = "/etc/ssh/ssh_host_*"
# NetworkManager keyfiles and Red Hat ifcfg files: lines that bind a connection to one MAC address.
MAC_LINE = re.compile(r"^\s*(mac-address|HWADDR|MACADDR)\s*=.*\n?", re.MULTILINE | re.IGNORECASE)
MAC_CONFIG_GLOBS = ("/etc/NetworkManager/system-connections/*", "/etc/sysconfig/network-scripts/ifcfg-*")
# systemd-networkd and netplan match on MACs with semantics a line removal would change: reported only.
MAC_REPORT_GLOBS = ("/etc/systemd/network/*", "/etc/netplan/*.yaml")
MAC_MENTION = re.compile(r"^\s*(MACAddress\s*=|macaddress\s*:)", re.MULTILINE)

# -n: the Linux analogs of AIX's /.rhosts and /etc/niminfo — the management server's trust in
# this machine and the machine's identity with its configuration-management server.
MANAGED_CLIENT_PATHS = (
    "/root/.ssh/authorized_keys",
    "/etc/salt/minion_id",
    "/etc/salt/pki/minion",
    "/etc/puppetlabs/puppet/ssl",
    "/var/lib/puppet/ssl",
    "/etc/chef/client.pem",
    "/etc/chef/client.rb",
)

_CMDLINE = re.compile(r'^(GRUB_CMDLINE_LINUX=)(["\']?)(.*?)\2[ \t]*$', re.MULTILINE)


def without_mac_lines(text: str) -> str:
    """A NetworkManager keyfile or ifcfg file without its MAC binding."""
    return MAC_LINE.sub("", text)


def mentions_mac(text: str) -> bool:
    return bool(MAC_MENTION.search(text))


def with_console(grub_default: str, console: str) -> str:
    """/etc/default/grub with console= in GRUB_CMDLINE_LINUX set to exactly CONSOLE."""
    arg = f"console={console}"
    m = _CMDLINE.search(grub_default)
    if m is None:
        sep = "" if grub_default.endswith("\n") or not grub_default else "\n"
        return f'{grub_default}{sep}GRUB_CMDLINE_LINUX="{arg}"\n'
    words = [w for w in shlex.split(m.group(3)) if not w.startswith("console=")]
    line = f'{m.group(1)}"{" ".join([*words, arg])}"'
    return grub_default[: m.start()] + line + grub_default[m.end() :]


def getty_for(console: str) -> str | None:
    """The getty unit for a serial console (ttyS0,115200 → serial-getty@ttyS0.service); None for tty0."""
    dev = console.split(",", 1)[0].removeprefix("/dev/")
    if re.fullmatch(r"tty(S|AMA|USB|hvc)\d+|hvc\d+", dev):
        return f"serial-getty@{dev}.service"
    return None
