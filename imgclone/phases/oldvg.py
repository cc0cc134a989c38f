"""AIX's old_rootvg rule: a clone that boots next to its source never meets a VG of its own name.

When a clone sits on a disk of the running host whose VG has the clone's final name (or
--beside-source says the clone will boot with its source attached), Phase 3 leaves the
clone's VG named altinst_<vg> on disk — the host keeps one VG of each name — and installs
an initramfs script in the clone. On the clone's first boot, before LVM activates root,
that script renames every other VG called <vg> (its source: another UUID) to old_<vg>
with autoactivation off, then renames the clone's own VG, found by UUID, to <vg>.
"""

from __future__ import annotations

import json
import logging
import re

from imgclone.errors import CommandError
from imgclone.host.run import HOST, Runner

log = logging.getLogger("imgclone")

SCRIPT = "/etc/initramfs-tools/scripts/init-premount/imgclone-vgname"

SCRIPT_HEAD = """\
#!/bin/sh
# Written by imgclone Phase 3: the clone's first boot next to its source (AIX's old_rootvg).
# Every VG named like the clone's but with another UUID becomes old_<vg>, not autoactivated;
# then the clone's own VG (by UUID) takes its final name. Harmless once that is done.
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in prereqs) prereqs; exit 0 ;; esac
. /scripts/functions
command -v lvm >/dev/null 2>&1 || exit 0
wait_for_udev 10
rename_vg() {  # own VG uuid, final name
    for uuid in $(lvm vgs --noheadings -o vg_uuid --select "vg_name=$2 && vg_uuid!=$1" 2>/dev/null); do
        if lvm vgrename "$uuid" "old_$2" >/dev/null; then
            lvm vgchange --setautoactivation n "old_$2" >/dev/null
            echo "imgclone: volume group $2 ($uuid) renamed old_$2" >/dev/console
        fi
    done
    current=""
    for name in $(lvm vgs --noheadings -o vg_name --select "vg_uuid=$1" 2>/dev/null); do current=$name; done
    if [ "$current" = "altinst_$2" ]; then  # (no tr, sed or awk in a klibc initramfs: shell only)
        lvm vgrename "$1" "$2" >/dev/null && echo "imgclone: volume group altinst_$2 renamed $2" >/dev/console
    fi
}
"""


def host_vg_names(runner: Runner = HOST) -> set[str]:
    """The VG names this host's LVM sees (inactive ones too); empty when LVM is not installed."""
    try:
        out = runner.run(["vgs", "--reportformat", "json", "-o", "vg_name"], check=True).text
    except CommandError as e:
        log.debug("vgs: %s", e)
        return set()
    reports = json.loads(out).get("report", [])
    return {str(v["vg_name"]) for r in reports for v in r.get("vg", [])}


def lvm_uuid(raw: str) -> str:
    """libguestfs's 32-character UUID in LVM's dashed form (6-4-4-4-4-4-6)."""
    raw = raw.replace("-", "")
    if len(raw) != 32:
        return raw
    parts, pos = [], 0
    for n in (6, 4, 4, 4, 4, 4, 6):
        parts.append(raw[pos : pos + n])
        pos += n
    return "-".join(parts)


def script_text(vgs: dict[str, str]) -> str:
    """The init-premount script for {own VG uuid: final name}."""
    return SCRIPT_HEAD + "".join(f"rename_vg {uuid} {name}\n" for uuid, name in sorted(vgs.items()))


def dm_name(vg: str, lv: str = "") -> str:
    """Device-mapper's name of vg (and lv): dashes doubled, joined by one dash."""
    return vg.replace("-", "--") + ("-" + lv.replace("-", "--") if lv else "")


def final_root_names(grub_cfg: str, renames: dict[str, str]) -> str:
    """grub.cfg written while the VG was altinst_<vg>: its /dev/mapper and /dev/<vg>/ paths under the final names."""
    for alt, final in renames.items():
        grub_cfg = re.sub(rf"/dev/mapper/{re.escape(dm_name(alt))}-(?!-)", f"/dev/mapper/{dm_name(final)}-", grub_cfg)
        grub_cfg = grub_cfg.replace(f"/dev/{alt}/", f"/dev/{final}/")
    return grub_cfg
