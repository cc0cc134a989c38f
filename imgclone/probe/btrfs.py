"""btrfs subvolumes as the layout records them, from what btrfs-progs says (`btrfs subvolume list`, `get-default`)
and which subvolume each mount shows: pure functions, the same for this host and for an image.

Paths are from the top level (subvolume id 5), as `btrfs subvolume list` prints them without -a whatever
subvolume the path given to it shows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from imgclone.errors import LayoutError
from imgclone.model.layout import Subvolume

TOP_LEVEL = 5  # the filesystem's own tree: not a subvolume of the layout
LIST = ["btrfs", "subvolume", "list", "-p", "-u", "-q", "-R"]  # + the mount point
LIST_READONLY = ["btrfs", "subvolume", "list", "-r"]
GET_DEFAULT = ["btrfs", "subvolume", "get-default"]  # + the mount point
SHOW = ["btrfs", "filesystem", "show", "--raw"]  # + the mount point: its devices
_ROW = re.compile(rb"^ID (\d+) (.*?)\bpath (.*)$")
_FIELDS = re.compile(rb"(parent_uuid|received_uuid|top level|parent|uuid|gen) (\S+)")
_DEFAULT = re.compile(r"^ID (\d+)\b")


@dataclass(frozen=True)
class SubvolRow:
    """One line of `btrfs subvolume list -p -u -q -R`."""

    id: int
    parent: int  # the subvolume it is in (5: the top level)
    path: str
    uuid: str = ""
    parent_uuid: str = ""  # the subvolume it is a snapshot of ("": none)


@dataclass(frozen=True)
class Listing:
    """What btrfs-progs says of one filesystem's subvolumes."""

    rows: tuple[SubvolRow, ...]
    default: int  # the default subvolume's id (TOP_LEVEL: none set)
    readonly: frozenset[int]

    def path_of(self, subvol_id: int) -> str:
        """The path of the subvolume with that id ("" for the top level)."""
        return next((r.path for r in self.rows if r.id == subvol_id), "")


def parse_list(text: bytes) -> list[SubvolRow]:
    """`btrfs subvolume list -p -u -q -R` (or -r) → its rows; a path keeps its spaces, and its bytes as
    surrogate escapes."""
    rows = []
    for line in text.splitlines():
        m = _ROW.match(line)
        if m is None:
            if line.strip():
                raise ValueError(f"btrfs subvolume list: cannot read {line!r}")
            continue
        fields = {k.decode(): v.decode() for k, v in _FIELDS.findall(m.group(2))}
        parent = fields.get("parent") or fields.get("top level") or str(TOP_LEVEL)
        uuid, parent_uuid = fields.get("uuid", "-"), fields.get("parent_uuid", "-")
        rows.append(SubvolRow(int(m.group(1)), int(parent), m.group(3).decode("utf-8", "surrogateescape"),
                              "" if uuid == "-" else uuid, "" if parent_uuid == "-" else parent_uuid))  # fmt: skip
    return rows


def parse_default(text: str) -> int:
    """`btrfs subvolume get-default` → the default subvolume's id (5, "ID 5 (FS_TREE)": the top level)."""
    m = _DEFAULT.match(text.strip())
    if m is None:
        raise ValueError(f"btrfs subvolume get-default: cannot read {text.strip()!r}")
    return int(m.group(1))


def parse_devices(text: str) -> list[str]:
    """`btrfs filesystem show --raw MOUNTPOINT` → the paths of the filesystem's devices ("devid N ... path P")."""
    paths = [line.split(" path ", 1)[1].strip() for line in text.splitlines() if line.strip().startswith("devid ")]
    if not paths:
        raise ValueError(f"btrfs filesystem show: no device in {text.strip()[:200]!r}")
    return paths


def refuse_multi_device(what: str, devices: list[str]) -> None:
    """A btrfs over several devices (its own RAID, or spanning disks) is not captured yet: refused by name."""
    if len(devices) > 1:
        raise LayoutError(f"{what}: a btrfs on {len(devices)} devices ({', '.join(devices)})",
                          "this imgclone captures a btrfs on one device only; multi-device btrfs is not supported "
                          "yet")  # fmt: skip


@dataclass(frozen=True)
class SubvolMount:
    """A mount of one subvolume of the filesystem: where, with which options."""

    path: str  # the subvolume's path from the top level ("" for the top level itself)
    mountpoint: str
    options: str


def subvolumes(fs_id: str, rows: Iterable[SubvolRow], default: int, readonly: Iterable[int],
               mounts: Iterable[SubvolMount]) -> tuple[Subvolume, ...]:  # fmt: skip
    """The layout's Subvolumes of the btrfs `fs_id`: every row, with the mount that shows it (the highest
    one when it is mounted twice) and whether it is the default, read-only, a snapshot."""
    ro = set(readonly)
    at: dict[str, SubvolMount] = {}
    for m in sorted(mounts, key=lambda m: (m.mountpoint.count("/"), m.mountpoint), reverse=True):
        at[m.path.strip("/")] = m
    out = []
    for r in sorted(rows, key=lambda r: (r.path.count("/"), r.path)):
        shown = at.get(r.path)
        out.append(Subvolume(subvolume_id(fs_id, r.path), fs_id, r.path, shown.mountpoint if shown else "",
                             shown.options if shown else "", default=r.id == default, readonly=r.id in ro,
                             snapshot=bool(r.parent_uuid), source_id=r.id))  # fmt: skip
    return tuple(out)


def subvolume_id(fs_id: str, path: str) -> str:
    """The layout id of a subvolume: sv-<filesystem>-<path> (fs-root, "@home" → sv-root-@home)."""
    slug = re.sub(r"[^A-Za-z0-9@._-]", "_", path.replace("/", "-"))
    return f"sv-{fs_id.removeprefix('fs-')}-{slug}"


def mounted_path(options: str, fsroot: str = "") -> str:
    """The subvolume a btrfs mount shows, from its options (`subvol=/@home`) or findmnt's FSROOT ("/@home");
    "" when neither says (the default subvolume then)."""
    opts: Mapping[str, str] = dict(o.partition("=")[::2] for o in options.split(","))
    return (opts.get("subvol") or fsroot).strip("/")
