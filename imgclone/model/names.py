"""LVM names on the target: the AIX alt prefixes and Linux LVM's naming rules.

During Phases 1-2 a volume group rootvg is altinst_rootvg and a logical volume root is alt_root, so the clone
never collides with the running system's names; Phase 3 renames them back (final_name()). LVM's rules (lvm(8)
"VALID NAMES", lib/misc/lvm-string.c of lvm2 2.03): the characters a-z A-Z 0-9 + _ . -; no leading '-'; not '.'
or '..'; at most 127 characters (NAME_LEN 128 with the NUL); LV names not starting with 'snapshot' or 'pvmove'
and not containing a component suffix ('_cdata', '_tmeta', …). The device-mapper name, vg-lv with every '-' in
either doubled, must also fit in 127 characters (DM_NAME_LEN 128).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from imgclone.errors import LayoutError, UsageError
from imgclone.model.layout import Layout

ALT_VG_PREFIX = "altinst_"
ALT_LV_PREFIX = "alt_"
OLD_VG_PREFIX = "old_"  # a source VG its clone renamed on its first boot (AIX's old_rootvg)
NAME_MAX = 127
DM_NAME_MAX = 127
RESERVED_LV_PREFIXES = ("pvmove", "snapshot")
RESERVED_LV_STRINGS = (
    "_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_imeta", "_iorig", "_mimage", "_mlog",
    "_pmspare", "_rimage", "_rmeta", "_tdata", "_tmeta", "_vdata", "_vorigin", "_wcorig",
)  # fmt: skip
RENAME_HINT = (
    "rename them in a layout file: imgclone archive show --layout ARCHIVE > layout.json, "
    'edit the "name" of each, then restore -i /full/path/layout.json'
)
_CHARSET = re.compile(r"[A-Za-z0-9+_.-]*")


def alt_vg(name: str) -> str:
    """The Phase 1-2 name of a volume group: rootvg → altinst_rootvg."""
    return ALT_VG_PREFIX + name


def alt_lv(name: str) -> str:
    """The Phase 1-2 name of a logical volume: root → alt_root."""
    return ALT_LV_PREFIX + name


def final_name(alt: str) -> str:
    """The name Phase 3 gives back: altinst_rootvg → rootvg, alt_root → root."""
    for prefix in (ALT_VG_PREFIX, ALT_LV_PREFIX):
        if alt.startswith(prefix):
            return alt[len(prefix) :]
    raise ValueError(f"{alt!r} has no alt prefix ({ALT_VG_PREFIX} or {ALT_LV_PREFIX})")


def dm_name(vg: str, lv: str) -> str:
    """The device-mapper name LVM gives vg/lv: '-' inside either is doubled, one '-' joins them."""
    return vg.replace("-", "--") + "-" + lv.replace("-", "--")


def name_problems(name: str, *, lv: bool) -> list[str]:
    """Why LVM refuses name as an LV (lv=True) or VG name; empty when it is fine."""
    if not name:
        return ["empty"]
    out = []
    bad = sorted(set(re.sub(r"[A-Za-z0-9+_.-]", "", name)))
    if bad:
        out.append("invalid character(s) " + " ".join(repr(c) for c in bad) + "; allowed: a-z A-Z 0-9 + _ . -")
    if name.startswith("-"):
        out.append("starts with '-'")
    if name in (".", ".."):
        out.append(f"{name!r} is reserved")
    if len(name) > NAME_MAX:
        out.append(f"{len(name)} characters, LVM allows {NAME_MAX}")
    if lv:
        out += [f"starts with the reserved {p!r}" for p in RESERVED_LV_PREFIXES if name.startswith(p)]
        out += [f"contains the reserved {s!r}" for s in RESERVED_LV_STRINGS if s in name]
    return out


def check_names(layout: Layout, *, limit: int) -> None:
    """Raise LayoutError listing every VG/LV name (prefixed, and as Phase 3 names it back) LVM or the limit refuses.

    layout carries the prefixed names (altinst_<vg>, alt_<lv>); limit caps the prefixed LV names (AIX: 15).
    """
    vg_names = {vg.id: vg.name for vg in layout.vgs}
    invalid = list(_invalid(layout, vg_names))
    too_long = [
        f"{final_name(vg_names.get(lv.vg, alt_vg('?')))}/{final_name(lv.name)} "
        f"({len(final_name(lv.name))} > {limit - len(ALT_LV_PREFIX)})"
        for lv in layout.lvs
        if len(lv.name) > limit
    ]
    groups = []
    if too_long:
        groups.append(
            f"logical volume names too long for --lv-name-limit {limit} "
            f"(the {ALT_LV_PREFIX} prefix takes {len(ALT_LV_PREFIX)}): " + ", ".join(too_long)
        )
    if invalid:
        groups.append("names LVM refuses: " + ", ".join(invalid))
    if groups:
        raise LayoutError("; ".join(groups) + "; " + RENAME_HINT)


def _invalid(layout: Layout, vg_names: dict[str, str]) -> Iterable[str]:
    seen_vg: set[str] = set()
    for vg in layout.vgs:
        label = f"volume group {_final(vg.name)}"
        yield from _name_issues(label, vg.name, lv=False)
        if vg.name in seen_vg:
            yield f"{label} (named twice)"
        seen_vg.add(vg.name)
    seen_lv: set[tuple[str, str]] = set()
    for lv in layout.lvs:
        vg_name = vg_names.get(lv.vg, alt_vg("?"))
        label = f"{_final(vg_name)}/{_final(lv.name)}"
        yield from _name_issues(label, lv.name, lv=True)
        if (lv.vg, lv.name) in seen_lv:
            yield f"{label} (named twice in its volume group)"
        seen_lv.add((lv.vg, lv.name))
        dm = dm_name(vg_name, lv.name)
        if len(dm) > DM_NAME_MAX:
            yield f"{label} (device-mapper name {dm} has {len(dm)} characters, at most {DM_NAME_MAX})"


def _name_issues(label: str, alt: str, *, lv: bool) -> Iterable[str]:
    problems = name_problems(alt, lv=lv)
    final = _final(alt)
    problems += [f"as {final} after Phase 3: {p}" for p in name_problems(final, lv=lv) if p not in problems]
    if problems:
        yield f"{label} ({'; '.join(problems)})"


def _final(alt: str) -> str:
    try:
        return final_name(alt)
    except ValueError:
        return alt


def prefix_warnings(source: Layout) -> list[str]:
    """Source VG/LV names that already carry an alt prefix (alt_disk_copy note 1: avoid them)."""
    vgs = [vg.name for vg in source.vgs if vg.name.startswith((ALT_VG_PREFIX, ALT_LV_PREFIX))]
    lvs = [lv.name for lv in source.lvs if lv.name.startswith(ALT_LV_PREFIX)]
    return [
        f"{kind} {name} already starts with an alt prefix; it works, but avoid alt-prefixed names (they are "
        "the clone's while Phase 3 has not run)"
        for kind, names in (("volume group", vgs), ("logical volume", lvs))
        for name in names
    ]


def check_limit(limit: int) -> None:
    """Raise UsageError unless --lv-name-limit leaves room for one character after alt_ and stays within LVM's."""
    low = len(ALT_LV_PREFIX) + 1
    if not low <= limit <= NAME_MAX:
        raise UsageError(f"--lv-name-limit {limit}: give {low} to {NAME_MAX}")


def final_layout(alt: Layout) -> Layout:
    """The layout with the alt prefixes removed (what Phase 3 renames to)."""
    vgs = tuple(dataclasses.replace(v, name=final_name(v.name)) for v in alt.vgs)
    lvs = tuple(dataclasses.replace(lv, name=final_name(lv.name)) for lv in alt.lvs)
    return dataclasses.replace(alt, vgs=vgs, lvs=lvs)


def deferred_layout(alt: Layout) -> Layout:
    """Final LV names in VGs still called altinst_<vg> (renamed on the clone's first boot: phases/oldvg.py)."""
    lvs = tuple(dataclasses.replace(lv, name=final_name(lv.name)) for lv in alt.lvs)
    return dataclasses.replace(alt, lvs=lvs)
