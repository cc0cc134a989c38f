"""The archive container: one uncompressed outer tar, written and read as a stream.

Members, in order (docs/archive-format.md is the specification):

    manifest.json                     format, layout, boot facts, excludes, streams
    streams/<fs-id>.tar.zst.00000     a GNU tar (pax) stream of one filesystem, zstd,
    streams/<fs-id>.tar.zst.00001     cut into parts of at most PART_SIZE bytes
    …
    manifest.json                     only when the output was not seekable (stdout)

A tar header needs the member's size before its data, and a stream's size is known only
at its end; cutting it into parts keeps memory flat (one part) with no temp copy. The
first manifest is written with room reserved (JSON padded with spaces) and rewritten in
place with the streams' digests when the output is a file; on a pipe the final manifest
is appended instead, and, as with tar extraction, the last one wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from . import __version__, faults
from .errors import ArchiveError

FORMAT = "imgclone-archive"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STREAM_DIR = "streams"
PART_SIZE = 32 * 1024 * 1024
BLOCK = 512
RECORD = 20 * BLOCK


def stream_member(fs_id: str) -> str:
    """Base member name of a filesystem's stream; parts append .NNNNN."""
    return f"{STREAM_DIR}/{fs_id}.tar.zst"


@dataclass(frozen=True)
class StreamInfo:
    fs: str
    mountpoint: str
    member: str
    parts: int
    bytes: int
    sha256: str
    files: int
    data_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StreamInfo:
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__})
        except (KeyError, TypeError) as e:
            raise ArchiveError(f"{MANIFEST}: stream entry {d!r} is incomplete") from e


def new_manifest(**fields: Any) -> dict[str, Any]:
    """A manifest skeleton; capture fills layout, source, boot, excludes and streams."""
    m: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "imgclone_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "complete": False,
        "streams": [],
    }
    m.update(fields)
    return m


def _header(name: str, size: int) -> bytes:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mode = 0o644
    ti.mtime = int(time.time())
    ti.type = tarfile.REGTYPE
    return ti.tobuf(format=tarfile.GNU_FORMAT)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % BLOCK)


class ArchiveWriter:
    """Writes an archive to a path (atomically, via a .partial file) or to "-" (stdout)."""

    def __init__(self, path: str) -> None:
        self.path = path
        special = path != "-" and os.path.exists(path) and not os.path.isfile(path)  # /dev/null, a fifo, a tape
        self._partial = None if path == "-" or special else path + ".partial"
        self._out: IO[bytes]
        self.seekable = self._partial is not None
        if path == "-":
            self._out = sys.stdout.buffer
        else:
            self._out = open(self._partial or path, "wb")  # noqa: SIM115 - closed in finish()/abort()
        self._written = 0
        self._manifest_at = -1
        self._manifest_room = 0

    def _write(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self._written += len(data)

    def _member(self, name: str, data: bytes | memoryview) -> None:
        self._write(_header(name, len(data)))
        self._write(data)
        self._write(_pad(len(data)))

    def begin(self, manifest: dict[str, Any], expected_streams: int) -> None:
        """Write the first manifest, with room for the streams' digests when seekable."""
        text = json.dumps(manifest, indent=2, sort_keys=True).encode()
        room = len(text) + 1024 * max(expected_streams, 1) + 4096
        room += -room % BLOCK
        self._write(_header(MANIFEST, room))
        self._manifest_at = self._written
        self._manifest_room = room
        self._write(text + b" " * (room - len(text)))

    def add_stream(
        self, fs_id: str, src: IO[bytes], on_bytes: Callable[[int], None] | None = None
    ) -> tuple[str, int, int, str]:
        """Copy src to parts of the stream; return (member, parts, bytes, sha256)."""
        member = stream_member(fs_id)
        digest = hashlib.sha256()
        buf = bytearray(PART_SIZE)
        view = memoryview(buf)
        parts = total = 0
        while True:
            n = _fill(src, view)
            if n == 0 and parts > 0:
                break
            digest.update(view[:n])
            self._member(f"{member}.{parts:05d}", view[:n])
            parts += 1
            total += n
            if on_bytes:
                on_bytes(n)
            if n < PART_SIZE:
                break
        faults.maybe_fail("capture", "stream")  # test hook: killed between two streams
        return member, parts, total, digest.hexdigest()

    def finish(self, manifest: dict[str, Any]) -> None:
        """Record the final manifest and close; the archive appears under its name only now."""
        manifest = dict(manifest, complete=True)
        text = json.dumps(manifest, indent=2, sort_keys=True).encode()
        if self.seekable and len(text) <= self._manifest_room:
            self._end()
            self._out.seek(self._manifest_at)
            self._out.write(text + b" " * (self._manifest_room - len(text)))
        else:
            self._member(MANIFEST, text)
            self._end()
        self._out.flush()
        if self._partial is not None:
            os.fsync(self._out.fileno())
            self._out.close()
            os.replace(self._partial, self.path)
        elif self.path != "-":
            self._out.close()

    def _end(self) -> None:
        """Tar's end: two zero blocks, then zeros up to a whole record."""
        self._write(b"\0" * (2 * BLOCK))
        self._write(b"\0" * (-self._written % RECORD))

    def abort(self) -> None:
        """Remove the partial file (a failed or interrupted capture leaves nothing)."""
        if self._partial is None:
            if self.path != "-":
                self._out.close()
            return
        try:
            self._out.close()
        finally:
            try:
                os.unlink(self._partial)
            except FileNotFoundError:
                pass


def _fill(src: IO[bytes], view: memoryview) -> int:
    """Read until view is full or src ends."""
    got = 0
    while got < len(view):
        n = src.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


# -- reading -----------------------------------------------------------------------------------


def check_manifest(m: Any, where: str) -> dict[str, Any]:
    """Validate the manifest's format and version; return it."""
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ArchiveError(f"{where}: not an imgclone archive (its {MANIFEST} has no imgclone format)")
    v = m.get("format_version")
    if not isinstance(v, int) or v > FORMAT_VERSION:
        raise ArchiveError(
            f"{where}: archive format version {v} is newer than this imgclone reads ({FORMAT_VERSION})",
            "upgrade imgclone",
        )
    return m


def _parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    try:
        return check_manifest(json.loads(data), where)
    except (ValueError, UnicodeDecodeError) as e:
        raise ArchiveError(f"{where}: {MANIFEST} is damaged ({e})") from e


@dataclass
class Part:
    """One stream part as met while reading: which stream, its index, its data."""

    member: str
    index: int
    data: IO[bytes]


class ArchiveReader:
    """Reads an archive sequentially (a file or "-" for stdin); the manifest comes first."""

    def __init__(self, path: str) -> None:
        self.path = path
        if path != "-" and not os.path.exists(path):
            raise ArchiveError(f"{path}: no such archive")
        self._f: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
        try:
            self._tar = tarfile.open(fileobj=self._f, mode="r|")
            first = self._tar.next()
        except tarfile.TarError as e:
            raise ArchiveError(f"{path}: not an imgclone archive ({e})") from e
        if first is None or first.name != MANIFEST:
            raise ArchiveError(f"{path}: not an imgclone archive (first member is not {MANIFEST})")
        self.manifest = _parse_manifest(self._read(first), path)

    def _read(self, ti: tarfile.TarInfo) -> bytes:
        f = self._tar.extractfile(ti)
        if f is None:
            raise ArchiveError(f"{self.path}: member {ti.name} is not a file")
        try:
            return f.read()
        except (tarfile.TarError, OSError) as e:
            raise ArchiveError(f"{self.path}: member {ti.name} is truncated ({e})") from e

    def parts(self) -> Iterator[Part]:
        """Yield stream parts in archive order; a trailing manifest replaces the first one."""
        while True:
            try:
                ti = self._tar.next()
            except tarfile.TarError as e:
                raise ArchiveError(f"{self.path}: damaged tar structure ({e})") from e
            if ti is None:
                return
            if ti.name == MANIFEST:
                self.manifest = _parse_manifest(self._read(ti), self.path)
                continue
            base, _, idx = ti.name.rpartition(".")
            f = self._tar.extractfile(ti)
            if not base.startswith(STREAM_DIR + "/") or not idx.isdigit() or f is None:
                raise ArchiveError(f"{self.path}: unexpected member {ti.name}")
            yield Part(base, int(idx), f)

    def streams(self) -> list[StreamInfo]:
        """The streams the (current) manifest describes."""
        return [StreamInfo.from_dict(s) for s in self.manifest.get("streams", [])]

    def close(self) -> None:
        self._tar.close()
        if self._f is not sys.stdin.buffer:
            self._f.close()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The archive's final manifest (reads to the end only when the first is incomplete)."""
    with ArchiveReader(os.fspath(path)) as r:
        if not r.manifest.get("complete"):
            for _ in r.parts():
                pass
        if not r.manifest.get("complete"):
            raise ArchiveError(f"{path}: archive is incomplete (capture did not finish)")
        return r.manifest
