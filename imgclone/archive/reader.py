"""Reading an archive in order (container.py describes the format), each stream checked against the manifest as
it goes; the final manifest; whether a file looks like an archive."""

from __future__ import annotations

import difflib
import hashlib
import io
import os
import stat
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from imgclone.archive import container
from imgclone.archive.container import (
    BLOCK,
    STREAM_DIR,
    parse_manifest,
    stream_member,
    tar_pad,
)
from imgclone.errors import ArchiveError
from imgclone.model.manifest import MANIFEST, Manifest, StreamInfo


class Readable(Protocol):
    """What a part's data offers: read(n) until it returns b""."""

    def read(self, n: int = -1, /) -> bytes: ...


@dataclass
class Part:
    """One stream part as met while reading: which stream, its index, its data.

    span is (offset, size) of the data in the archive file when the reader seeks (a regular file), so that a
    consumer may read the bytes there itself; None when the archive is read as a stream (a pipe, a device).
    """

    member: str
    index: int
    data: Readable
    span: tuple[int, int] | None = None


class ArchiveReader:
    """Reads an archive in order (a file, with seeks over data not asked for, or "-" for stdin); manifest first."""

    def __init__(self, path: str) -> None:
        self.path = path
        if path != "-" and not os.path.exists(path):
            raise ArchiveError(f"{path}: no such archive")
        if os.path.isdir(path):
            raise ArchiveError(f"{path}: is a directory, not an archive")
        self._f: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
        # a regular file is read with seeks: the headers are read and the parts' data only when asked for
        self.seekable = path != "-" and stat.S_ISREG(os.fstat(self._f.fileno()).st_mode)
        try:
            self._tar = tarfile.open(fileobj=self._f, mode="r:" if self.seekable else "r|")
            first = self._tar.next()
        except tarfile.TarError as e:
            if self._f is not sys.stdin.buffer:
                self._f.close()
            raise ArchiveError(f"{path}: {_first_header_problem(path)} ({e})") from e
        self._members = [first] if first is not None else []
        self._typed: tuple[dict[str, Any], Manifest] | None = None
        self.doc: dict[str, Any] = {}
        try:
            if first is None or first.name != MANIFEST:
                raise ArchiveError(f"{path}: not an imgclone archive (first member is not {MANIFEST})")
            self.doc = parse_manifest(self._read(first), path)
            self._check_length(first)
        except ArchiveError:
            self.close()
            raise

    @property
    def manifest(self) -> Manifest:
        """The current manifest (the first until parts() meets a later one), as data."""
        if self._typed is None or self._typed[0] is not self.doc:
            self._typed = (self.doc, Manifest.from_dict(self.doc))
        return self._typed[1]

    def _check_length(self, first: tarfile.TarInfo) -> None:
        """A file shorter than its complete manifest says is truncated: say so before anything reads the streams
        (a restore would else write its targets first). The bound counts one header a part, no long names."""
        if not self.doc.get("complete") or not stat.S_ISREG(os.fstat(self._f.fileno()).st_mode):
            return
        size = os.fstat(self._f.fileno()).st_size
        end = first.offset_data + first.size + len(tar_pad(first.size))
        for s in self._recorded():
            parts, total = s.get("parts"), s.get("bytes")
            if not isinstance(parts, int) or not isinstance(total, int) or parts < 1:
                continue  # a damaged entry: the stream checks name it
            last = total - (parts - 1) * container.PART_SIZE
            end += (parts - 1) * (BLOCK + container.PART_SIZE) + BLOCK + last + len(tar_pad(last))
            if end > size:
                raise ArchiveError(f"{self.path}: stream {s.get('member')} is truncated: the archive ends at byte "
                                   f"{size}, its {MANIFEST} puts the stream's end at {end} or later")  # fmt: skip
        if end + 2 * BLOCK > size:
            raise ArchiveError(f"{self.path}: archive is truncated: it ends at byte {size}, before tar's end")

    def _read(self, ti: tarfile.TarInfo) -> bytes:
        f = self._tar.extractfile(ti)
        if f is None:
            raise ArchiveError(f"{self.path}: member {ti.name} is not a file")
        try:
            return f.read()
        except (tarfile.TarError, OSError) as e:
            raise ArchiveError(f"{self.path}: member {ti.name} is truncated ({e})") from e

    def parts(self, check: bool = True) -> Iterator[Part]:
        """Yield stream parts in archive order; a trailing manifest replaces the first one.

        With check, each stream's parts, size and sha256 are compared with the manifest (as soon as the
        stream ends when the manifest is complete, else at the end), and a stream the manifest lists but
        the archive lacks is an error: ArchiveError names the stream. Unread part data is read (hashed) here.
        """
        seen: dict[str, _Seen] = {}
        current: _Seen | None = None
        while True:
            try:
                ti = self._tar.next()
            except tarfile.TarError as e:
                raise ArchiveError(f"{self.path}: damaged tar structure after {_name(current)} ({e})") from e
            if ti is None:
                self._check_end()
                break
            self._members.append(ti)
            if ti.name == MANIFEST:
                self.doc = parse_manifest(self._read(ti), self.path)
                continue
            base, _, idx = ti.name.rpartition(".")
            f = self._tar.extractfile(ti)
            if not base.startswith(STREAM_DIR + "/") or not idx.isdigit() or f is None:
                raise ArchiveError(f"{self.path}: unexpected member {ti.name} (after {_name(current)})")
            guarded = _Guarded(f, f"{self.path}: stream {base} is truncated or damaged at part {ti.name}")
            if not check:
                yield Part(base, int(idx), guarded, (ti.offset_data, ti.size) if self.seekable else None)
                continue
            if current is not None and current.member != base:
                self._check_stream(current)
            current = seen.setdefault(base, _Seen(base))
            if int(idx) != current.parts or current.checked:
                raise ArchiveError(f"{self.path}: stream {base} is damaged: part {ti.name} out of order")
            data = _Hashing(guarded, current)
            yield Part(base, int(idx), data)
            while data.read(1 << 20):
                pass
            current.parts += 1
        if check:
            self._check_all(seen)

    def _check_end(self) -> None:
        """tarfile ends an archive read as a stream at the first header that does not parse, as if it were the
        end: in a file, look at that block, which must be zeros (a pipe cannot be looked back at)."""
        offset = self._tar.offset
        try:
            block = os.pread(self._f.fileno(), BLOCK, offset)
        except (OSError, ValueError, io.UnsupportedOperation):
            return
        if not block.strip(b"\0"):
            return
        name = block[:100].split(b"\0")[0].decode("utf-8", "backslashreplace")
        if not name:
            raise ArchiveError(f"{self.path}: the end of the archive is damaged (a non-zero byte in the block at "
                               f"offset {offset}, where tar's end is zeros)")  # fmt: skip
        base = name.rpartition(".")[0] if name.startswith(STREAM_DIR + "/") else name
        known = [MANIFEST, *self._expected()]
        match = difflib.get_close_matches(base, known, n=1, cutoff=0.8)
        whose = "" if not match else f": {match[0]}" if match[0] == MANIFEST else f": stream {match[0]}"
        raise ArchiveError(f"{self.path}: the tar header at offset {offset} is damaged (it reads {name!r}{whose})")

    def _expected(self) -> list[str]:
        """The streams' member names: from the manifest, or (a first, incomplete one) from its filesystems."""
        members = [str(s.get("member")) for s in self._recorded()]
        if members:
            return members
        layout = self.doc.get("layout")
        filesystems = layout.get("filesystems") if isinstance(layout, dict) else None
        if not isinstance(filesystems, list):
            return []
        return [stream_member(str(fs.get("id"))) for fs in filesystems if isinstance(fs, dict)]

    def _check_stream(self, s: _Seen) -> None:
        """One stream against a complete manifest (an incomplete one gets its digests only at the end)."""
        if not self.doc.get("complete"):
            return
        s.checked = True
        info = next((i for i in self._recorded() if i.get("member") == s.member), None)
        if info is None:
            raise ArchiveError(f"{self.path}: stream {s.member} is not described by the {MANIFEST}")
        if (s.parts, s.bytes, s.sha.hexdigest()) != (info.get("parts"), info.get("bytes"), info.get("sha256")):
            raise ArchiveError(f"{self.path}: stream {s.member} is damaged: {s.parts} part(s), {s.bytes} bytes read; "
                               f"sha256 does not match the {MANIFEST}")  # fmt: skip

    def _recorded(self) -> list[dict[str, Any]]:
        streams = self.doc.get("streams")
        return [s for s in streams if isinstance(s, dict)] if isinstance(streams, list) else []

    def _check_all(self, seen: dict[str, _Seen]) -> None:
        if not self.doc.get("complete"):
            raise ArchiveError(f"{self.path}: archive is incomplete (capture did not finish)")
        for s in seen.values():
            if not s.checked:
                self._check_stream(s)
        for info in self._recorded():
            if info.get("member") not in seen:
                raise ArchiveError(f"{self.path}: stream {info.get('member')} is missing: the archive is truncated or "
                                   "damaged before it")  # fmt: skip

    @property
    def members(self) -> list[tarfile.TarInfo]:
        """Every member read so far (offsets of header and data), manifests included."""
        return list(self._members)

    def streams(self) -> list[StreamInfo]:
        """The streams the (current) manifest describes."""
        return [StreamInfo.from_dict(s) for s in self.doc.get("streams", [])]  # verify needs no whole manifest

    def close(self) -> None:
        self._tar.close()
        if self._f is not sys.stdin.buffer:
            self._f.close()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Seen:
    """What reading one stream found so far."""

    member: str
    parts: int = 0
    bytes: int = 0
    checked: bool = False

    def __post_init__(self) -> None:
        self.sha = hashlib.sha256()


class _Guarded:
    """A part's data whose read errors (the archive ends inside the part) are an ArchiveError saying where."""

    def __init__(self, f: IO[bytes], what: str) -> None:
        self._f = f
        self._what = what

    def read(self, n: int = -1) -> bytes:
        try:
            return self._f.read(n)
        except tarfile.ReadError as e:
            raise ArchiveError(f"{self._what} ({e})") from e


class _Hashing:
    """A part's data as read by the consumer, counted and hashed into its stream."""

    def __init__(self, f: Readable, into: _Seen) -> None:
        self._f = f
        self._into = into

    def read(self, n: int = -1) -> bytes:
        chunk = self._f.read(n)
        self._into.sha.update(chunk)
        self._into.bytes += len(chunk)
        return chunk


def _name(s: _Seen | None) -> str:
    return s.member if s is not None else MANIFEST


def _first_block(path: str) -> bytes:
    """The file's first tar block; b"" when it cannot be read or is shorter."""
    try:
        with open(path, "rb") as f:
            head = f.read(BLOCK)
    except OSError:
        return b""
    return head if len(head) == BLOCK else b""


def _first_header_problem(path: str) -> str:
    """A first tar header that does not parse: a damaged archive's manifest header, or no archive at all."""
    head = _first_block(path)
    if head and (head.startswith(MANIFEST.encode()[:8]) or head[257:262] == b"ustar"):
        return f"the tar header of {MANIFEST} is damaged"
    return "not an imgclone archive"


def is_archive(path: str) -> bool:
    """Whether a file starts as an imgclone archive does: a tar header of its manifest (cheap; nothing is parsed)."""
    head = _first_block(path)
    return bool(head) and head[:100].rstrip(b"\0") == MANIFEST.encode() and head[257:262] == b"ustar"


def read_manifest_doc(path: str | Path) -> dict[str, Any]:
    """The archive's final manifest as its JSON document (reads to the end only when the first is incomplete)."""
    with ArchiveReader(os.fspath(path)) as r:
        if not r.doc.get("complete"):
            for _ in r.parts():
                pass
        if not r.doc.get("complete"):
            raise ArchiveError(f"{path}: archive is incomplete (capture did not finish)")
        return r.doc


def read_manifest(path: str | Path) -> Manifest:
    """The archive's final manifest."""
    return Manifest.from_dict(read_manifest_doc(path))
