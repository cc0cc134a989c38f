"""alt cleanup --old-vg: the old_<vg> (AIX's old_rootvg) a clone's first boot left on this host, removed.

The clone renamed its source's volume group old_<vg> when it first booted beside it (phases/oldvg.py). That VG
lives on the host, so its removal uses the host's LVM tools: refused while one of its LVs is active, open or
mounted; without --yes-wipe it only says what would go.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from imgclone.errors import ImgcloneError, UsageError
from imgclone.fs.mounttab import unescape
from imgclone.host.reports import LVM_ENV
from imgclone.host.run import HOST, Runner
from imgclone.model.names import OLD_VG_PREFIX


@dataclass(frozen=True)
class HostLv:
    name: str
    path: str
    dm_path: str
    active: bool
    open: bool


@dataclass(frozen=True)
class OldVg:
    """A volume group on the host, as the LVM reports show it."""

    name: str
    pvs: tuple[str, ...]
    lvs: tuple[HostLv, ...]


def _report(runner: Runner, argv: list[str], kind: str) -> list[dict[str, str]]:
    res = runner.run(argv + ["--reportformat", "json"], env=LVM_ENV)
    try:
        return [dict(x) for r in json.loads(res.text).get("report", []) for x in r.get(kind, [])]
    except (ValueError, AttributeError, TypeError) as e:
        raise ImgcloneError(f"{argv[0]}: unexpected report: {e}") from e


def find_old_vg(name: str, runner: Runner = HOST) -> OldVg:
    """The host VG `name` with its PVs and LVs; UsageError for a name without old_, ImgcloneError when absent."""
    if not name.startswith(OLD_VG_PREFIX) or len(name) == len(OLD_VG_PREFIX):
        raise UsageError(
            f"--old-vg {name}: only a volume group named {OLD_VG_PREFIX}<vg> is removed this way",
            "it is a source VG its clone renamed, AIX's old_rootvg; other volume groups are not imgclone's to remove",
        )
    pvs = [p for p in _report(runner, ["pvs", "-o", "pv_name,vg_name"], "pv") if p.get("vg_name") == name]
    if not pvs:
        raise ImgcloneError(f"--old-vg {name}: no such volume group on this host (pvs lists none of its PVs)")
    lvs = _report(runner, ["lvs", "-o", "lv_name,vg_name,lv_attr,lv_path,lv_dm_path", name], "lv")
    host_lvs = tuple(HostLv(lv["lv_name"], lv.get("lv_path", ""), lv.get("lv_dm_path", ""),
                            lv.get("lv_attr", "")[4:5] == "a", lv.get("lv_attr", "")[5:6] == "o")
                     for lv in lvs if lv.get("vg_name", name) == name)  # fmt: skip
    return OldVg(name, tuple(sorted(p["pv_name"] for p in pvs)), host_lvs)


def mount_sources() -> dict[str, str]:
    """Mounted device → its mount point, from /proc/self/mountinfo (sources resolved to real paths)."""
    out: dict[str, str] = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if sep and len(fields) > 4 and len(tail) > 1 and tail[1].startswith("/dev/"):
            out[os.path.realpath(unescape(tail[1]))] = unescape(fields[4])
    return out


def check_old_vg_unused(vg: OldVg, mounts: dict[str, str]) -> None:
    """Refuse when one of its LVs or PVs is mounted, or an LV is active or open."""
    for lv in vg.lvs:
        where = next((mounts[os.path.realpath(p)] for p in (lv.path, lv.dm_path)
                      if p and os.path.realpath(p) in mounts), None)  # fmt: skip
        if where:
            raise ImgcloneError(f"--old-vg {vg.name}: logical volume {lv.name} is mounted at {where}",
                                "unmount it, then vgchange -an " + vg.name)  # fmt: skip
        if lv.active or lv.open:
            raise ImgcloneError(f"--old-vg {vg.name}: logical volume {lv.name} is active",
                                f"vgchange -an {vg.name} first, if nothing uses it")  # fmt: skip
    for pv in vg.pvs:
        if os.path.realpath(pv) in mounts:
            raise ImgcloneError(f"--old-vg {vg.name}: {pv} is mounted at {mounts[os.path.realpath(pv)]}")


def cleanup_old_vg(name: str, *, yes: bool, runner: Runner = HOST) -> list[str]:
    """Remove the host VG old_<vg> and wipe its PVs (with yes); without yes, say what would be wiped."""
    vg = find_old_vg(name, runner)
    check_old_vg_unused(vg, mount_sources())
    what = (f"volume group {vg.name} ({len(vg.lvs)} logical volume(s)) and the LVM and other signatures of "
            f"{', '.join(vg.pvs)}")  # fmt: skip
    if not yes:
        return [f"would remove {what}; nothing done (--yes-wipe does it)"]
    runner.run(["vgremove", "--yes", "--force", vg.name], env=LVM_ENV)
    runner.run(["pvremove", "--yes", *vg.pvs], env=LVM_ENV)
    runner.run(["wipefs", "--all", *vg.pvs])
    return [f"removed {what}"]
