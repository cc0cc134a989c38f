"""archive verify: the manifest's own sha256, every stream's sha256 and zstd integrity, by name; with deep, also
every stream read through GNU tar to its end, as restore reads it.

The digests tie every byte to what capture wrote (capture checked that tar and zstd succeeded then); `pzstd -t`
proves this host's zstd decodes each stream, on every core. Reading the decompressed stream into `tar -t` costs
about half again as much CPU (1.1 GiB through a pipe for a 1 GiB tree), so it is asked for, not done by default.

An archive file is also checked byte for byte where no digest reaches: each member's tar header must carry
its checksum in the canonical form, and the padding after each member and the end of the archive must be
zeros. So a changed byte anywhere in the file is reported, with the member it belongs to.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from imgclone.archive.container import BLOCK, RECORD
from imgclone.archive.reader import ArchiveReader, Part
from imgclone.archive.streams import TAR_LIST, ZSTD_DECOMPRESS_ALL_CORES, ZSTD_TEST
from imgclone.errors import ArchiveError
from imgclone.host.run import DEVNULL, PIPE, Pipeline
from imgclone.model.manifest import StreamInfo


@dataclass
class StreamCheck:
    """What reading one stream found."""

    member: str
    parts: int = 0
    bytes: int = 0
    files: int | None = None  # members tar listed (deep only)
    sha256: str = ""
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Report:
    path: str
    deep: bool = False
    streams: list[StreamCheck] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and all(not s.errors for s in self.streams)

    def to_dict(self) -> dict[str, Any]:
        return {"archive": self.path, "ok": self.ok, "deep": self.deep, "errors": self.errors,
                "streams": [s.to_dict() for s in self.streams]}  # fmt: skip


CHUNK = 1 << 20


class _StreamReader:
    """Feeds one stream's parts to sha256 and to `pzstd -t` (deep: to `pzstd -d | tar -t`, counting members).

    A part with a span (the archive is a regular file) is read from the file at its offset, in 1 MiB chunks into
    one buffer: no copies through tarfile's stream reader.
    """

    def __init__(self, member: str, fd: int | None, path: str, deep: bool) -> None:
        self.check = StreamCheck(member, files=0 if deep else None)
        self._path = path
        self._sha = hashlib.sha256()
        self._fd = fd
        self._buf = bytearray(CHUNK)
        # pipes of a chunk's size: zstd decompresses one chunk while this thread hashes the next
        stages = [ZSTD_DECOMPRESS_ALL_CORES, TAR_LIST] if deep else [ZSTD_TEST]
        self._pipe = Pipeline(stages, stdin=PIPE, stdout=PIPE if deep else DEVNULL, stderr=PIPE, pipe_size=CHUNK)
        self._pipe.__enter__()
        self._counter: threading.Thread | None = None
        if deep:
            self._counter = threading.Thread(target=self._count, args=(self._pipe.out,), daemon=True)
            self._counter.start()

    def _count(self, out: IO[bytes]) -> None:
        files = 0
        for _ in out:
            files += 1
        self.check.files = files

    def feed(self, part: Part) -> None:
        if part.index != self.check.parts:
            self.check.errors.append(f"part {part.index} where part {self.check.parts} was expected")
        self.check.parts += 1
        if part.span is None or self._fd is None:
            while chunk := part.data.read(CHUNK):
                self._take(chunk)
            return
        offset, size = part.span
        end = offset + size
        view = memoryview(self._buf)
        while offset < end:
            n = os.preadv(self._fd, [view[: min(CHUNK, end - offset)]], offset)
            if n == 0:
                raise ArchiveError(f"{self._path}: stream {part.member} is truncated or damaged at part "
                                   f"{part.index}: the file ends at byte {offset}, inside the part")  # fmt: skip
            self._take(view[:n])
            offset += n

    def _take(self, chunk: bytes | memoryview) -> None:
        self._sha.update(chunk)
        self.check.bytes += len(chunk)
        self._pipe.write(chunk)  # False: zstd gave up, its message says why; keep hashing

    def close(self) -> StreamCheck:
        self._pipe.close_input()
        if self._counter is not None:
            self._counter.join()
        rcs = self._pipe.wait()
        msgs = [self._pipe.stderr_text(i).strip() for i in range(len(rcs))]
        self._pipe.__exit__(None, None, None)
        if rcs[0] != 0:
            self.check.errors.append(f"zstd: {_last(msgs[0]) or f'exit code {rcs[0]}'}")
        elif len(rcs) > 1 and rcs[1] != 0:
            self.check.errors.append(f"tar: {_last(msgs[1]) or f'exit code {rcs[1]}'}")
        self.check.sha256 = self._sha.hexdigest()
        return self.check


def _last(text: str) -> str:
    """The last line a tool wrote, without pzstd's "pzstd: -: " (the stream is its standard input)."""
    last = text.splitlines()[-1] if text else ""
    return last.removeprefix("pzstd: -: ").rstrip(".")


def verify(path: str, deep: bool = False) -> Report:
    """Read the whole archive once and check every stream against the manifest (deep: and through tar)."""
    report = Report(path, deep)
    found: dict[str, StreamCheck] = {}
    current: _StreamReader | None = None
    with ArchiveReader(path) as r, _positional(path, r.seekable) as fd:  # not an archive: an error, not a report
        try:
            for part in r.parts(check=False):
                if current is None or current.check.member != part.member:
                    if current is not None:
                        found[current.check.member] = current.close()
                    current = _StreamReader(part.member, fd, path, deep)
                current.feed(part)
            if current is not None:
                found[current.check.member] = current.close()
                current = None
            _compare(report, r.streams(), found, bool(r.doc.get("complete")))
        except ArchiveError as e:
            report.errors.append(str(e))
            if current is not None:
                found[current.check.member] = current.close()
            report.streams.extend(found.values())
            return report  # the tar structure is damaged: the bytes after it were not read as members
        if path != "-":
            report.errors += check_container(path, r.members)
    return report


@contextlib.contextmanager
def _positional(path: str, seekable: bool) -> Iterator[int | None]:
    """A descriptor of the archive file for positional reads (None for a pipe or a device)."""
    if not seekable:
        yield None
        return
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def check_container(path: str, members: list[tarfile.TarInfo]) -> list[str]:
    """Bytes no digest covers: canonical header checksums, zero padding after members, a zero end."""
    errors = []
    regular = os.path.isfile(path)  # a device holds older bytes after the archive's end: not ours to check
    with open(path, "rb") as f:
        for i, ti in enumerate(members):
            f.seek(ti.offset)
            header = f.read(BLOCK)
            unsigned = sum(header[:148]) + 8 * 0x20 + sum(header[156:])  # the checksum field counts as spaces
            if header[148:156] != b"%06o\0 " % unsigned:
                errors.append(f"the tar header of {ti.name} is damaged (its checksum field)")
            end = ti.offset_data + ti.size
            last = i + 1 == len(members)
            stop = members[i + 1].offset if not last else None if regular else _end_of_records(end)
            bad = _first_non_zero(f, end, stop)
            if bad is not None:
                where = f"the end of the archive (after {ti.name})" if last else f"the padding after {ti.name}"
                errors.append(f"{where} is damaged (a non-zero byte at offset {bad})")
    return errors


def _end_of_records(end: int) -> int:
    """Where the writer's end stops: data padded to a block, two zero blocks, zeros up to a whole record."""
    end += -end % BLOCK + 2 * BLOCK
    return end + -end % RECORD


def _first_non_zero(f: IO[bytes], start: int, stop: int | None) -> int | None:
    """Offset of the first non-zero byte in [start, stop) (stop None: the end of the file), read in chunks."""
    f.seek(start)
    pos = start
    while stop is None or pos < stop:
        chunk = f.read(1 << 20 if stop is None else min(1 << 20, stop - pos))
        if not chunk:
            return None
        stripped = chunk.lstrip(b"\0")
        if stripped:
            return pos + len(chunk) - len(stripped)
        pos += len(chunk)
    return None


def _compare(report: Report, expected: list[StreamInfo], found: dict[str, StreamCheck], complete: bool) -> None:
    if not complete:
        report.errors.append("the archive is incomplete: its capture did not finish")
    for info in expected:
        check = found.pop(info.member, None)
        if check is None:
            report.errors.append(f"stream {info.member} ({info.mountpoint}) is missing")
            continue
        report.streams.append(check)
        if check.sha256 != info.sha256 or check.bytes != info.bytes:
            check.errors.append(
                f"sha256 mismatch: {check.bytes} bytes read, {info.bytes} recorded; the stream is damaged"
            )
        if check.parts != info.parts:
            check.errors.append(f"{check.parts} parts read, {info.parts} recorded")
    for check in found.values():
        report.streams.append(check)
        check.errors.append("stream is not described by the manifest")
