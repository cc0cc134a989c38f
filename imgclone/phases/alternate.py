"""An alternate made by Phase 1, opened again by Phases 2 and 3: its journal, its names, its drives."""

from __future__ import annotations

import dataclasses
from typing import Any

from imgclone.errors import PhaseStateError
from imgclone.guest.interface import Guest
from imgclone.model import journal as state
from imgclone.model import names
from imgclone.model.layout import Layout
from imgclone.storage import build


def load(targets: tuple[str, ...]) -> dict[str, Any]:
    """The journal of an earlier Phase 1 on exactly these targets."""
    doc = state.load(targets)
    if doc is None:
        raise PhaseStateError(
            f"no Phase 1 recorded for -d {' '.join(targets)}", "run Phase 1 first (restore/copy -P1 or all phases)"
        )
    if state.interrupted_phase1(doc):
        raise PhaseStateError(f"Phase 1 on -d {' '.join(targets)} did not complete (started {doc['phase1_started']})",
                              "run Phase 1 again (imgclone alt cleanup --wipe first if it says so)")  # fmt: skip
    woken = doc.get("woken")
    if woken:
        raise PhaseStateError(f"the alternate on -d {' '.join(targets)} is mounted at {woken.get('mountpoint')}",
                              f"imgclone alt sleep -d {' '.join(targets)} first")  # fmt: skip
    return doc


def final_layout(alt: Layout) -> Layout:
    """The layout with the alt prefixes removed (what Phase 3 renames to)."""
    vgs = tuple(dataclasses.replace(v, name=names.final_name(v.name)) for v in alt.vgs)
    lvs = tuple(dataclasses.replace(lv, name=names.final_name(lv.name)) for lv in alt.lvs)
    return dataclasses.replace(alt, vgs=vgs, lvs=lvs)


def deferred_layout(alt: Layout) -> Layout:
    """Final LV names in VGs still called altinst_<vg> (renamed on the clone's first boot: phases/oldvg.py)."""
    lvs = tuple(dataclasses.replace(lv, name=names.final_name(lv.name)) for lv in alt.lvs)
    return dataclasses.replace(alt, lvs=lvs)


def current_layout(doc: dict[str, Any]) -> Layout:
    """The layout under the names the volumes carry now: altinst_/alt_ until Phase 3 renamed them."""
    alt = Layout.from_dict(doc["layout"])
    phase3 = doc.get("phases", {}).get("3")
    if phase3 is None:
        return alt
    return deferred_layout(alt) if phase3.get("deferred_vgs") else final_layout(alt)


Drive = tuple[str, str]  # a target's path and format (raw, qcow2)


def drives(doc: dict[str, Any]) -> list[Drive]:
    """The alternate's targets as drives, in the journal's order."""
    return [(str(t["path"]), str(t["format"])) for t in doc["targets"]]


def devices(g: Guest, layout: Layout) -> build.Devices:
    """Layout ids → appliance device names, in the order the drives were added."""
    listed = g.list_devices()
    return build.Devices(layout, {d.id: listed[i] for i, d in enumerate(layout.disks)})
