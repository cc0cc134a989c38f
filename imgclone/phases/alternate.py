"""An alternate made by Phase 1, opened again by Phases 2 and 3: its journal and one appliance.

Drives are added with labels (targeta, targetb, ...: letters only), so commands run in
the appliance name /dev/disk/guestfs/targeta whatever order its kernel enumerated them in.

One command that runs several phases (restore, copy) runs them in one appliance (Appliance):
the first phase launches it, the next ones take it over, since their drives are the same
targets. Under TCG a launch and shutdown cost 20–30 s.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

from imgclone.errors import PhaseStateError
from imgclone.guest.appliance import Guest
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


def disk_label(index: int) -> str:
    """targeta, targetb, ... (libguestfs labels are letters only)."""
    return "target" + chr(ord("a") + index)


Drive = tuple[str, str]  # a target's path and format (raw, qcow2)


def drives(doc: dict[str, Any]) -> list[Drive]:
    """The alternate's targets as drives, in the journal's order."""
    return [(str(t["path"]), str(t["format"])) for t in doc["targets"]]


class Appliance:
    """The appliance of one command's phases. use() gives the running one when it holds exactly the drives asked
    for, else launches a new one; a phase that fails closes it (what it left mounted or active is not for the
    next phase). The command closes it at its end (a context manager)."""

    def __init__(self, *, debug: bool = False) -> None:
        self.debug = debug
        self._g: Guest | None = None
        self._drives: tuple[Drive, ...] = ()

    @contextlib.contextmanager
    def use(self, targets: Sequence[Drive], *, discard: bool = False) -> Iterator[Guest]:
        """discard: a launch adds the drives so that fstrim frees their blocks (copy/blocks.py)."""
        wanted = tuple(targets)
        if self._g is None or self._drives != wanted:
            self.close()
            g = Guest(trace=self.debug)
            for i, (path, fmt) in enumerate(wanted):
                g.add_drive(
                    path, readonly=False, format=fmt, label=disk_label(i), **({"discard": True} if discard else {})
                )
            g.launch()
            self._g, self._drives = g, wanted
        try:
            yield self._g
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        g, self._g = self._g, None
        if g is not None:
            g.close()

    def __enter__(self) -> Appliance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def opened(targets: Sequence[Drive], shared: Appliance | None, *, debug: bool = False, discard: bool = False
           ) -> Iterator[Guest]:  # fmt: skip
    """An appliance with the targets as writable, labelled drives: the shared one, or one of this phase's own."""
    with contextlib.nullcontext(shared) if shared is not None else Appliance(debug=debug) as app:
        with app.use(targets, discard=discard) as g:
            yield g


def devices(g: Guest, layout: Layout) -> build.Devices:
    """Layout ids → appliance device names, in the order the drives were added."""
    listed = g.list_devices()
    return build.Devices(layout, {d.id: listed[i] for i, d in enumerate(layout.disks)})
