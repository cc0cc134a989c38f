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

Every manifest carries its own sha256 (`manifest_sha256`, over the member's exact bytes
with that value zeroed), so a changed byte in it is found even where the JSON still parses
(a size, a UUID). Readers check it, and check each stream's parts, size and sha256 against
the manifest as they go: a damaged archive is an ArchiveError naming the manifest or the
stream, never a silent success.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import hashlib
import io
import json
import os
import re
import stat
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from imgclone import __version__, faults
from imgclone.errors import ArchiveError

FORMAT = "imgclone-archive"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STREAM_DIR = "streams"
PART_SIZE = 32 * 1024 * 1024
CHUNK = 1024 * 1024  # what a seekable output's writer holds at a time
BLOCK = 512
RECORD = 20 * BLOCK
DIGEST = "manifest_sha256"
_ZEROS = b"0" * 64
_DIGEST_FIELD = re.compile(rb'\n  "manifest_sha256": "([0-9a-f]{64})"')  # top level: json.dumps(indent=2)
DIGEST_SINCE = (0, 2, 0)  # imgclone versions from this one write manifest_sha256; older archives have none


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
    content: dict[str, Any] | None = None  # content.ContentFacts; archives before it have none

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StreamInfo:
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k != "content"}, content=d.get("content"))
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


def manifest_bytes(manifest: dict[str, Any], room: int = 0) -> bytes:
    """The manifest member's data: sorted, indented JSON padded with spaces to room, holding its own sha256."""
    text = json.dumps(dict(manifest, **{DIGEST: _ZEROS.decode()}), indent=2, sort_keys=True).encode()
    data = text + b" " * (room - len(text))
    digest = hashlib.sha256(data).hexdigest().encode()
    return _DIGEST_FIELD.sub(lambda m: m.group(0).replace(_ZEROS, digest), data, count=1)


def _write_error(path: str, e: OSError) -> ArchiveError:
    """An OSError while writing the archive, as one line (ENOSPC says where space is missing)."""
    hint = None
    if e.errno in (errno.ENOSPC, errno.EDQUOT) and path != "-":
        where = os.path.dirname(os.path.abspath(path))
        hint = f"free space in {where} or write elsewhere; the partial archive was removed"
    return ArchiveError(f"{path}: cannot write the archive: {e.strerror or e}", hint)


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
            try:
                self._out = open(self._partial or path, "wb")  # noqa: SIM115 - closed in finish()/abort()
            except OSError as e:
                raise _write_error(path, e) from e
        self._written = 0
        self._manifest_at = -1
        self._manifest_room = 0

    def _write(self, data: bytes | memoryview) -> None:
        try:
            self._out.write(data)
        except OSError as e:
            raise _write_error(self.path, e) from e
        self._written += len(data)

    def _member(self, name: str, data: bytes | memoryview) -> None:
        self._write(_header(name, len(data)))
        self._write(data)
        self._write(_pad(len(data)))

    def begin(self, manifest: dict[str, Any], expected_streams: int) -> None:
        """Write the first manifest, with room for the streams' digests when seekable."""
        room = len(manifest_bytes(manifest)) + 1024 * max(expected_streams, 1) + 4096
        # header and manifest fill whole tar records: a reader of a pipe reads records (tarfile: 10 KiB) and would
        # else wait for the rest of one, held back until the first part is written (up to 32 MiB of capture)
        room += -(BLOCK + room) % RECORD
        self._write(_header(MANIFEST, room))
        self._manifest_at = self._written
        self._manifest_room = room
        self._write(manifest_bytes(manifest, room))
        try:  # copy's restore plans from it, and launches its appliance, while the first part fills
            self._out.flush()
        except OSError as e:
            raise _write_error(self.path, e) from e

    def add_stream(
        self, fs_id: str, src: IO[bytes], on_bytes: Callable[[int], None] | None = None
    ) -> tuple[str, int, int, str]:
        """Copy src to parts of the stream; return (member, parts, bytes, sha256).

        A seekable output gets each part as it comes, in chunks, and its header's size afterwards: memory holds
        one chunk. A pipe needs the size before the data, so there a whole part is held.
        """
        member = stream_member(fs_id)
        digest = hashlib.sha256()
        buf = bytearray(CHUNK if self.seekable else PART_SIZE)
        view = memoryview(buf)
        parts = total = 0
        while True:
            name = f"{member}.{parts:05d}"
            if self.seekable:
                n = self._part_in_place(name, src, view, digest, first=parts == 0)
            else:
                n = _fill(src, view)
                if n:
                    digest.update(view[:n])
                if n or not parts:
                    self._member(name, view[:n])
            if n == 0 and parts > 0:
                break
            parts += 1
            total += n
            if on_bytes:
                on_bytes(n)
            if n < PART_SIZE:
                break
        faults.maybe_fail("capture", "stream")  # test hook: killed between two streams
        return member, parts, total, digest.hexdigest()

    def _part_in_place(self, name: str, src: IO[bytes], view: memoryview, digest: Any, first: bool) -> int:
        """One part written as read (its header first with size 0, then rewritten with the size); none written
        when src has nothing more and this is not the first part (the stream ended on a part's boundary)."""
        at = self._written
        header = _header(name, 0)
        self._write(header)
        n = 0
        while n < PART_SIZE:
            got = _fill(src, view[: min(len(view), PART_SIZE - n)])
            if not got:
                break
            digest.update(view[:got])
            self._write(view[:got])
            n += got
        try:
            if n == 0 and not first:
                self._out.seek(at)
                self._out.truncate()
                self._written = at
                return 0
            final = _header(name, n)
            assert len(final) == len(header), "a tar header's length does not depend on the size"
            self._out.seek(at)
            self._out.write(final)
            self._out.seek(0, os.SEEK_END)
        except OSError as e:
            raise _write_error(self.path, e) from e
        self._write(_pad(n))
        self._write_behind()
        return n

    def _write_behind(self) -> None:
        """Start writing the archive so far to disk while the capture goes on, and let the page cache drop what is
        written: the final fsync then waits for the last part only, not for the whole archive, and a capture does
        not push the system's own files out of the cache. (Linux: POSIX_FADV_DONTNEED starts the writeback of dirty
        pages and drops the clean ones.)"""
        try:
            self._out.flush()
        except OSError as e:
            raise _write_error(self.path, e) from e
        with contextlib.suppress(OSError):  # advice: a filesystem that ignores it only loses the overlap
            os.posix_fadvise(self._out.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

    def finish(self, manifest: dict[str, Any]) -> None:
        """Record the final manifest and close; the archive appears under its name only now."""
        manifest = dict(manifest, complete=True)
        text = manifest_bytes(manifest)
        try:
            if self.seekable and len(text) <= self._manifest_room:
                self._end()
                self._out.seek(self._manifest_at)
                self._out.write(manifest_bytes(manifest, self._manifest_room))
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
        except OSError as e:
            raise _write_error(self.path, e) from e

    def _end(self) -> None:
        """Tar's end: two zero blocks, then zeros up to a whole record."""
        self._write(b"\0" * (2 * BLOCK))
        self._write(b"\0" * (-self._written % RECORD))

    def abort(self) -> None:
        """Remove the partial file (a failed or interrupted capture leaves nothing)."""
        # closing flushes what is buffered, which fails again on a full disk: that error is not the news
        if self._partial is None:
            if self.path != "-":
                with contextlib.suppress(OSError):
                    self._out.close()
            return
        with contextlib.suppress(OSError):
            self._out.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._partial)


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
        m = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ArchiveError(f"{where}: {MANIFEST} is damaged ({e})") from e
    if isinstance(m, dict) and DIGEST in m:
        check_digest(data, m[DIGEST], where)
    checked = check_manifest(m, where)
    if DIGEST not in checked and not _older_than_digests(checked.get("imgclone_version")):
        raise ArchiveError(f"{where}: {MANIFEST} is damaged (its {DIGEST} is missing)")
    return checked


def check_digest(data: bytes, recorded: Any, where: str) -> None:
    """The manifest member's bytes against the sha256 it records of itself."""
    found = _DIGEST_FIELD.findall(data)
    ok = isinstance(recorded, str) and found == [recorded.encode()]
    if ok:
        zeroed = _DIGEST_FIELD.sub(lambda m: m.group(0).replace(m.group(1), _ZEROS), data, count=1)
        ok = hashlib.sha256(zeroed).hexdigest() == recorded
    if not ok:
        raise ArchiveError(f"{where}: {MANIFEST} is damaged (its sha256 does not match)")


def _older_than_digests(version: Any) -> bool:
    """Whether an archive made by this imgclone version has no manifest digest (made before they existed)."""
    try:
        return tuple(int(x) for x in str(version).split(".")[:3]) < DIGEST_SINCE
    except ValueError:
        return False  # unreadable: a damaged manifest, not an old one


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
        try:
            if first is None or first.name != MANIFEST:
                raise ArchiveError(f"{path}: not an imgclone archive (first member is not {MANIFEST})")
            self.manifest = _parse_manifest(self._read(first), path)
            self._check_length(first)
        except ArchiveError:
            self.close()
            raise

    def _check_length(self, first: tarfile.TarInfo) -> None:
        """A file shorter than its complete manifest says is truncated: say so before anything reads the streams
        (a restore would else write its targets first). The bound counts one header a part, no long names."""
        if not self.manifest.get("complete") or not stat.S_ISREG(os.fstat(self._f.fileno()).st_mode):
            return
        size = os.fstat(self._f.fileno()).st_size
        end = first.offset_data + first.size + len(_pad(first.size))
        for s in self._recorded():
            parts, total = s.get("parts"), s.get("bytes")
            if not isinstance(parts, int) or not isinstance(total, int) or parts < 1:
                continue  # a damaged entry: the stream checks name it
            last = total - (parts - 1) * PART_SIZE
            end += (parts - 1) * (BLOCK + PART_SIZE) + BLOCK + last + len(_pad(last))
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
                self.manifest = _parse_manifest(self._read(ti), self.path)
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
        layout = self.manifest.get("layout")
        filesystems = layout.get("filesystems") if isinstance(layout, dict) else None
        if not isinstance(filesystems, list):
            return []
        return [stream_member(str(fs.get("id"))) for fs in filesystems if isinstance(fs, dict)]

    def _check_stream(self, s: _Seen) -> None:
        """One stream against a complete manifest (an incomplete one gets its digests only at the end)."""
        if not self.manifest.get("complete"):
            return
        s.checked = True
        info = next((i for i in self._recorded() if i.get("member") == s.member), None)
        if info is None:
            raise ArchiveError(f"{self.path}: stream {s.member} is not described by the {MANIFEST}")
        if (s.parts, s.bytes, s.sha.hexdigest()) != (info.get("parts"), info.get("bytes"), info.get("sha256")):
            raise ArchiveError(f"{self.path}: stream {s.member} is damaged: {s.parts} part(s), {s.bytes} bytes read; "
                               f"sha256 does not match the {MANIFEST}")  # fmt: skip

    def _recorded(self) -> list[dict[str, Any]]:
        streams = self.manifest.get("streams")
        return [s for s in streams if isinstance(s, dict)] if isinstance(streams, list) else []

    def _check_all(self, seen: dict[str, _Seen]) -> None:
        if not self.manifest.get("complete"):
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
        return [StreamInfo.from_dict(s) for s in self.manifest.get("streams", [])]

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


def _first_header_problem(path: str) -> str:
    """A first tar header that does not parse: a damaged archive's manifest header, or no archive at all."""
    try:
        with open(path, "rb") as f:
            head = f.read(BLOCK)
    except OSError:
        head = b""
    if len(head) == BLOCK and (head.startswith(MANIFEST.encode()[:8]) or head[257:262] == b"ustar"):
        return f"the tar header of {MANIFEST} is damaged"
    return "not an imgclone archive"


def is_archive(path: str) -> bool:
    """Whether a file starts as an imgclone archive does: a tar header of its manifest (cheap; nothing is parsed)."""
    try:
        with open(path, "rb") as f:
            head = f.read(BLOCK)
    except OSError:
        return False
    return len(head) == BLOCK and head[:100].rstrip(b"\0") == MANIFEST.encode() and head[257:262] == b"ustar"


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The archive's final manifest (reads to the end only when the first is incomplete)."""
    with ArchiveReader(os.fspath(path)) as r:
        if not r.manifest.get("complete"):
            for _ in r.parts():
                pass
        if not r.manifest.get("complete"):
            raise ArchiveError(f"{path}: archive is incomplete (capture did not finish)")
        return r.manifest
