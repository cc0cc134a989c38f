"""Placement: which partitions each target gets, in order (the source's own, then one PV per volume group)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from imgclone.errors import UsageError
from imgclone.model.layout import Partition
from imgclone.plan.source import PlanSource
from imgclone.plan.types import Target


@dataclass(frozen=True)
class Slot:
    """One partition to create: a copy of source object `ref` (kind "part") or a PV of VG `ref` (kind "pv")."""

    kind: str
    ref: str
    spills: bool = False  # a PV whose VG continues on a later target


def place(src: PlanSource, targets: Sequence[Target], honour: bool) -> list[list[Slot]]:
    """The slots of each target, in order; honour: a layout file places the VGs (pv_target)."""
    lay, n = src.layout, len(targets)
    pvs = {pv for vg in lay.vgs for pv in vg.pvs}
    first = []
    for d in lay.disks:
        if d.id in src.fs_on or d.id in src.swap_on:
            first.append(Slot("part", d.id))
        parts = sorted((p for p in lay.partitions if p.disk == d.id and p.id not in pvs), key=lambda p: p.start)
        first += [Slot("part", p.id) for p in parts]
    homes: list[list[str]] = [[] for _ in targets]
    for vg in lay.vgs:
        for t in sorted({pv_target(src, pv, n, honour) for pv in vg.pvs}):
            homes[t].append(vg.id)
    root = src.root_vg()
    for t in range(1, n):
        if not homes[t]:
            if root is None:
                raise UsageError(f"target {targets[t].path} would stay empty: the source has no volume group to span")
            homes[t].append(root)
    rows = [first + [Slot("pv", v) for v in homes[0]]] + [[Slot("pv", v) for v in homes[t]] for t in range(1, n)]
    return [
        [replace(s, spills=s.kind == "pv" and any(s.ref in homes[u] for u in range(t + 1, n))) for s in row]
        for t, row in enumerate(rows)
    ]


def pv_target(src: PlanSource, pv: str, n: int, honour: bool) -> int:
    """The target of source PV pv: 0, or with a layout file (honour) the index of its disk when that target exists."""
    o = src.layout.get(pv)
    k = [d.id for d in src.layout.disks].index(o.disk if isinstance(o, Partition) else o.id) if honour else 0
    return k if k < n else 0
