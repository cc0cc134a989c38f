"""The planner's inputs and its output: the resize policies, a target, the options, and the plan with its table."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from imgclone.model.content import ContentFacts
from imgclone.model.layout import Layout
from imgclone.units import human


class Resize(StrEnum):
    EXACT = "exact"
    FIT = "fit"
    GROW = "grow"


@dataclass(frozen=True)
class Target:
    """One -d argument, already resolved by the caller."""

    path: str  # host path of the image or block device
    size: int  # bytes; 0 = an image to be created, its size decided by the plan
    sector_size: int = 512


@dataclass(frozen=True)
class PlanOptions:
    resize: Resize | None = None  # None: GROW when the targets are larger than needed, else EXACT
    convert: Mapping[str, str] = field(default_factory=dict)  # fs type → fs type (-T: ext2/ext3 → ext4)
    lv_name_limit: int = 127  # 15 = the AIX rule (originals ≤ 11)
    skip_space_check: bool = False  # -S
    size: int | None = None  # --size for images being created
    edited: Layout | None = None  # -i LAYOUT.json, parsed: the user's edited source layout
    # fs id → files in its archive stream (the manifest's `files`): checks ext inode counts, costs xfs/btrfs inodes
    files: Mapping[str, int] = field(default_factory=dict)
    # fs id → its stream's content facts (largest file, most links, largest xattr), checked against each target
    # type's limits; None: the stream records none (an older archive), named in a warning; absent: not known yet
    content: Mapping[str, ContentFacts | None] = field(default_factory=dict)
    snapshots: bool = False  # the archive holds btrfs snapshots (capture --snapshots): the target has them too


@dataclass(frozen=True)
class PlanRow:
    """One line of the --dry-run table."""

    object: str
    kind: str
    source_size: int
    target_size: int
    source_type: str
    target_type: str
    source_name: str
    target_name: str
    files: int = 0  # a filesystem's files planned for (PlanOptions.files); 0: not known


@dataclass(frozen=True)
class Plan:
    source: Layout  # the layout planned from: the archive's, or the -i layout (with the archive's `used`)
    target: Layout
    rows: tuple[PlanRow, ...]
    warnings: tuple[str, ...]
    target_sizes: tuple[int, ...]  # final size of each target, in -d order
    resize: Resize = Resize.EXACT  # the policy applied

    def table(self) -> str:
        """The --dry-run table: object, size source → target, type change, name change (human sizes), files."""
        head = ("OBJECT", "KIND", "SIZE", "TYPE", "NAME", "FILES")
        lines = [head] + [
            (
                r.object,
                r.kind,
                "-"
                if r.kind == "subvolume"
                else f"{human(r.source_size) if r.source_size else 'new'} → {human(r.target_size)}",
                _change(r.source_type, r.target_type),
                _change(r.source_name, r.target_name),
                str(r.files) if r.files else "",
            )
            for r in self.rows
        ]
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
        return "\n".join(out) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "source": self.source.to_dict(),
            "target": self.target.to_dict(),
            "rows": [dataclasses.asdict(r) for r in self.rows],
            "warnings": list(self.warnings),
            "target_sizes": list(self.target_sizes),
            "resize": str(self.resize),
        }


def _change(a: str, b: str) -> str:
    return a if a == b else f"{a or '-'} → {b or '-'}"
