"""The archive's manifest as data: what was captured, from where, how it boots, which streams hold it.

docs/archive-format.md specifies its JSON. `to_dict` writes exactly the keys imgclone has always written, and
`from_dict` reads every manifest an imgclone wrote: the fields added later (`inodes`, `prescan`, a stream's
`content`) are optional, and keys it does not know are left alone (the container's own `manifest_sha256`). The
first manifest of an archive has no streams yet and `complete` false; the final one has both.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from imgclone import __version__
from imgclone.errors import ArchiveError
from imgclone.model.boot import BootFacts
from imgclone.model.content import ContentFacts
from imgclone.model.layout import Layout
from imgclone.model.trees import Tree, trees

FORMAT = "imgclone-archive"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"  # the member that holds it


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class StreamInfo:
    """One filesystem's stream: its member, parts, bytes and sha256, the files and data it holds."""

    fs: str
    mountpoint: str
    member: str
    parts: int
    bytes: int
    sha256: str
    files: int
    data_bytes: int
    content: ContentFacts | None = None  # archives before content facts have none
    subvolume: str = ""  # a btrfs subvolume's stream: the subvolume's id (fs is its filesystem's)

    @property
    def tree(self) -> str:
        """The id of the tree it holds (model/trees.py): the subvolume's, else the filesystem's."""
        return self.subvolume or self.fs

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: getattr(self, k) for k in ("fs", "mountpoint", "member", "parts", "bytes", "sha256",
                                                           "files", "data_bytes")}  # fmt: skip
        if self.content is not None:
            d["content"] = self.content.to_dict()
        if self.subvolume:
            d["subvolume"] = self.subvolume
        return d

    @classmethod
    def from_dict(cls, d: Any) -> StreamInfo:
        try:
            return cls(str(d["fs"]), str(d["mountpoint"]), str(d["member"]), int(d["parts"]), int(d["bytes"]),
                       str(d["sha256"]), int(d["files"]), int(d["data_bytes"]),
                       ContentFacts.from_dict(d.get("content")), str(d.get("subvolume") or ""))  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ArchiveError(f"{MANIFEST}: stream entry {d!r} is incomplete") from e


@dataclass(frozen=True)
class Source:
    """What was captured: this host (kind "running", or "mounts" for --mount) or an image ("image")."""

    kind: str
    host: str = ""  # running, mounts: the host's name
    mounts: tuple[str, ...] = ()  # running, mounts: the mount points captured
    path: str = ""  # image: the image or device
    format: str = ""  # image: raw, qcow2, ...

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "image":
            return {"kind": self.kind, "path": self.path, "format": self.format}
        return {"kind": self.kind, "host": self.host, "mounts": list(self.mounts)}

    @classmethod
    def from_dict(cls, d: Any) -> Source:
        d = d if isinstance(d, Mapping) else {}
        return cls(str(d.get("kind") or ""), str(d.get("host") or ""), tuple(map(str, d.get("mounts") or ())),
                   str(d.get("path") or ""), str(d.get("format") or ""))  # fmt: skip


@dataclass(frozen=True)
class Excludes:
    """The exclude rules the capture applied and where they came from."""

    patterns: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"sources": list(self.sources), "patterns": list(self.patterns)}

    @classmethod
    def from_dict(cls, d: Any) -> Excludes:
        d = d if isinstance(d, Mapping) else {}
        return cls(tuple(map(str, d.get("patterns") or ())), tuple(map(str, d.get("sources") or ())))


@dataclass(frozen=True)
class Manifest:
    """An archive's manifest (a capture's first one, or the final one with the streams)."""

    layout: Layout
    source: Source
    boot: BootFacts | None
    excludes: Excludes = field(default_factory=Excludes)
    created: str = field(default_factory=now)
    streams: tuple[StreamInfo, ...] = ()
    complete: bool = False
    read_errors: int | None = None  # files that could not be read; the final manifest says
    inodes: Mapping[str, int] | None = (
        None  # fs id → inodes in use when the capture began (a piped restore plans by it)
    )
    prescan: Mapping[str, ContentFacts | None] | None = None  # copy with a conversion: files near a type's limits
    snapshots: bool = False  # btrfs snapshots were captured (each a stream), not left out (model/trees.py)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    imgclone_version: str = __version__

    def finished(self, streams: tuple[StreamInfo, ...], read_errors: int) -> Manifest:
        """The final manifest: the streams written and the files that could not be read."""
        return replace(self, streams=streams, read_errors=read_errors)

    def planning_files(self) -> dict[str, int]:
        """fs id → files to plan for: the streams' own counts, or in the first manifest of a piped archive (no
        streams yet) the source's inodes in use when the capture began, an upper bound (older archives have none)."""
        if self.streams:
            files: dict[str, int] = {}
            for s in self.streams:  # a btrfs's subvolumes: one stream each
                files[s.fs] = files.get(s.fs, 0) + s.files
            return files
        return dict(self.inodes or {})

    def planning_content(self) -> dict[str, ContentFacts | None]:
        """fs id → what its content needs of a target type (None: its stream records nothing). A piped archive's
        first manifest has no streams yet: its `prescan` (copy with a conversion: the files near a type's limits)
        when it has one, else nothing is known."""
        if not self.streams:
            return dict(self.prescan or {})
        content: dict[str, ContentFacts | None] = {}
        for s in self.streams:
            seen = content.get(s.fs, s.content)
            content[s.fs] = None if seen is None or s.content is None else seen.merged(s.content)
        return content

    def trees(self) -> list[Tree]:
        """The trees its streams hold, in their order (model/trees.py)."""
        return trees(self.layout, snapshots=self.snapshots)

    def stream_bytes(self) -> int:
        return sum(s.bytes for s in self.streams)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": self.format, "format_version": self.format_version, "imgclone_version": self.imgclone_version,
            "created": self.created, "complete": self.complete, "streams": [s.to_dict() for s in self.streams],
            "layout": self.layout.to_dict(), "excludes": self.excludes.to_dict(), "source": self.source.to_dict(),
            "boot": self.boot.to_dict() if self.boot is not None else {},
        }  # fmt: skip
        if self.read_errors is not None:
            d["read_errors"] = self.read_errors
        if self.inodes is not None:
            d["inodes"] = dict(self.inodes)
        if self.prescan is not None:
            d["prescan"] = {i: (f.to_dict() if f is not None else None) for i, f in self.prescan.items()}
        if self.snapshots:
            d["snapshots"] = True
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Manifest:
        """A manifest whose format the container checked already; ArchiveError for one that is not whole."""
        try:
            layout = Layout.from_dict(d["layout"])
            streams = tuple(StreamInfo.from_dict(s) for s in d.get("streams") or ())
            inodes = d.get("inodes")
            prescan = d.get("prescan")
            return cls(
                layout=layout, source=Source.from_dict(d.get("source")), boot=BootFacts.from_dict(d.get("boot")),
                excludes=Excludes.from_dict(d.get("excludes")), created=str(d.get("created") or ""),
                streams=streams, complete=bool(d.get("complete")),
                read_errors=int(d["read_errors"]) if d.get("read_errors") is not None else None,
                inodes={str(k): int(v) for k, v in inodes.items()} if isinstance(inodes, Mapping) else None,
                prescan={str(k): ContentFacts.from_dict(v) for k, v in prescan.items()}
                if isinstance(prescan, Mapping) else None, snapshots=d.get("snapshots") is True,
                format=str(d.get("format", FORMAT)), format_version=int(d.get("format_version", FORMAT_VERSION)),
                imgclone_version=str(d.get("imgclone_version", "")),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ArchiveError(f"{MANIFEST}: incomplete or malformed ({e})") from e
