"""Writing an archive (container.py describes the format): the manifest first, with room for the streams'
digests, the streams cut into parts as they come, the final manifest in place or appended."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sys
from collections.abc import Callable
from typing import IO, Any

from imgclone import faults
from imgclone.archive import container
from imgclone.archive.container import BLOCK, RECORD, manifest_bytes, stream_member, tar_header, tar_pad
from imgclone.errors import ArchiveError
from imgclone.model.manifest import MANIFEST

CHUNK = 1024 * 1024  # what a seekable output's writer holds at a time


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
        self._write(tar_header(name, len(data)))
        self._write(data)
        self._write(tar_pad(len(data)))

    def begin(self, manifest: dict[str, Any], expected_streams: int) -> None:
        """Write the first manifest, with room for the streams' digests when seekable."""
        room = len(manifest_bytes(manifest)) + 1024 * max(expected_streams, 1) + 4096
        # header and manifest fill whole tar records: a reader of a pipe reads records (tarfile: 10 KiB) and would
        # else wait for the rest of one, held back until the first part is written (up to 32 MiB of capture)
        room += -(BLOCK + room) % RECORD
        self._write(tar_header(MANIFEST, room))
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
        buf = bytearray(CHUNK if self.seekable else container.PART_SIZE)
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
            if n < container.PART_SIZE:
                break
        faults.maybe_fail("capture", "stream")  # test hook: killed between two streams
        return member, parts, total, digest.hexdigest()

    def _part_in_place(self, name: str, src: IO[bytes], view: memoryview, digest: Any, first: bool) -> int:
        """One part written as read (its header first with size 0, then rewritten with the size); none written
        when src has nothing more and this is not the first part (the stream ended on a part's boundary)."""
        at = self._written
        header = tar_header(name, 0)
        self._write(header)
        n = 0
        while n < container.PART_SIZE:
            got = _fill(src, view[: min(len(view), container.PART_SIZE - n)])
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
            final = tar_header(name, n)
            assert len(final) == len(header), "a tar header's length does not depend on the size"
            self._out.seek(at)
            self._out.write(final)
            self._out.seek(0, os.SEEK_END)
        except OSError as e:
            raise _write_error(self.path, e) from e
        self._write(tar_pad(n))
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
