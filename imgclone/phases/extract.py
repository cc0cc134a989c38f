"""Phase 1's data path: every filesystem's stream from the archive into its filesystem on the clone.

One pass over the archive, in order: each stream's parts go through zstd on the host into a pipe that tar_in reads
inside the appliance (Extraction), with the filesystem mounted alone at / (layouts without "/" work too). A stream
guard (stream_guard.py) may read the decompressed stream on its way to refuse what the target type cannot hold;
-V lists every name as it passes (Listing). One progress bar counts the archive's bytes.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from tqdm import tqdm

from imgclone import faults
from imgclone.archive.reader import ArchiveReader, Part
from imgclone.archive.streams import TAR_LIST, ZSTD_DECOMPRESS
from imgclone.errors import ArchiveError, GuestfsError, ImgcloneError
from imgclone.guest.interface import Guest
from imgclone.guest.treemount import mount_tree
from imgclone.host.run import DEVNULL, PIPE, Pipeline
from imgclone.model.trees import Tree
from imgclone.phases.phase import Phase
from imgclone.phases.stream_guard import StreamGuard


def extract_all(g: Guest, reader: ArchiveReader, trees: Mapping[str, tuple[Tree, str]],
                guards: Mapping[str, StreamGuard], *, total: int | None, verbose: bool, progress: bool | None
                ) -> None:  # fmt: skip
    """Every stream of the archive into its tree (stream id → the tree and its filesystem's device; guards by
    filesystem id); total: the archive's stream bytes (None while it is still being captured)."""
    disable = not (sys.stderr.isatty() if progress is None else progress)
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="restore", disable=disable,
              file=sys.stderr, dynamic_ncols=True) as bar:  # fmt: skip

        def say(line: str) -> None:
            bar.write(line, file=sys.stderr)  # above the bar; a plain line when it is disabled

        current: Extraction | None = None
        try:
            for part in reader.parts():
                if current is None or current.member != part.member:
                    if current is not None:
                        current.finish()
                    tree_id = part.member.rsplit("/", 1)[-1].removesuffix(".tar.zst")
                    if tree_id not in trees:
                        raise ArchiveError(f"stream {part.member} has no filesystem in the target layout")
                    tree, device = trees[tree_id]
                    listing = Listing(tree.shown_at or "/", say) if verbose else None
                    current = Extraction(g, part.member, tree, device, listing, guards.get(tree.fs.id))
                current.feed(part, bar)
            if current is not None:
                current.finish()
        except BaseException:
            if current is not None:
                current.abandon()  # else tar_in waits for zstd forever, and the appliance cannot shut down
            raise


class Listing:
    """-V: each file of a stream as it passes, named at its mount point. tar_in lists nothing, so a second
    `zstd -d | tar -t` reads the same compressed bytes; without -V none of this runs."""

    def __init__(self, mountpoint: str, say: Callable[[str], None]) -> None:
        self._pipe = Pipeline([ZSTD_DECOMPRESS, TAR_LIST], stdin=PIPE, stderr=DEVNULL).__enter__()
        prefix = mountpoint.rstrip("/")

        def names() -> None:
            for raw in self._pipe.out:
                name = raw.decode("utf-8", "backslashreplace").rstrip("\n").removeprefix(".").rstrip("/")
                say(prefix + name or "/")

        self._thread = threading.Thread(target=names, daemon=True)
        self._thread.start()

    def write(self, chunk: bytes) -> None:
        self._pipe.write(chunk)  # False: a damaged stream; restore's own checks say so

    def close(self, *, abandon: bool = False) -> None:
        """Wait for the last names (or, abandoning, stop listing)."""
        if abandon:
            self._pipe.kill()
        self._pipe.close_input()
        self._thread.join(timeout=60)
        self._pipe.__exit__(BaseException if abandon else None, None, None)


class Extraction:
    """One stream: parts → zstd -d (host) → pipe → tar_in (appliance), in a thread. With a guard, zstd's output
    passes through this process on its way, so the guard reads its headers first (phases/stream_guard.py)."""

    def __init__(self, g: Guest, member: str, tree: Tree, device: str, listing: Listing | None = None,
                 guard: StreamGuard | None = None) -> None:  # fmt: skip
        self.member = member
        self._g = g
        self._listing = listing
        self._refused: str | None = None
        g.umount_all()
        mount_tree(g, tree, device, "/")
        r, w = os.pipe()
        self._pipe = Pipeline([ZSTD_DECOMPRESS], stdin=PIPE, stdout=w if guard is None else PIPE,
                              stderr=PIPE).__enter__()  # fmt: skip
        self._relay = None
        if guard is None:
            os.close(w)
        else:
            self._relay = threading.Thread(target=self._guarded, args=(guard, w), daemon=True)
            self._relay.start()
        self._failure: list[BaseException] = []

        def consume() -> None:
            try:
                g.tar_in(f"/dev/fd/{r}", "/", xattrs=True, selinux=True, acls=True)
            except BaseException as e:  # noqa: B036 - handed to the main thread
                self._failure.append(e)
            finally:
                os.close(r)

        self._thread = threading.Thread(target=consume, daemon=True)
        self._thread.start()
        self._done = False

    def _guarded(self, guard: StreamGuard, w: int) -> None:
        """zstd's output → the guard → tar_in's pipe; at the first refusal tar_in gets no more (it fails on the cut
        stream) and zstd is stopped, so that feed() stops too."""
        try:
            with os.fdopen(w, "wb") as dst:
                while chunk := self._pipe.out.read(1 << 20):
                    self._refused = guard.check(chunk)
                    if self._refused is not None:
                        self._pipe.kill()
                        return
                    dst.write(chunk)
        except BrokenPipeError:
            self._pipe.kill()  # tar_in stopped reading: its own error says why

    def _check_refused(self) -> None:
        if self._refused is not None:
            raise ImgcloneError(self._refused, "the restore stopped there, before tar had the file")

    def feed(self, part: Part, bar: Any) -> None:
        while chunk := part.data.read(1 << 20):
            if not self._pipe.write(chunk):
                break  # zstd gave up (or the guard stopped it); finish() reports why
            if self._listing is not None:
                self._listing.write(chunk)
            bar.update(len(chunk))
        self._check_refused()  # at once: the rest of a piped stream would be read for nothing

    def abandon(self) -> None:
        """After an error mid-stream: kill zstd, so that tar_in reads the end of its input and returns."""
        if self._done:
            return
        self._done = True
        self._pipe.kill()
        self._pipe.close_input()
        if self._relay is not None:
            self._relay.join(timeout=60)
        self._thread.join(timeout=60)
        self._pipe.__exit__(BaseException, None, None)
        if self._listing is not None:
            self._listing.close(abandon=True)

    def finish(self) -> None:
        self._done = True
        self._pipe.close_input()
        [rc] = self._pipe.wait()
        if self._relay is not None:
            self._relay.join()
        self._thread.join()
        err = self._pipe.stderr_text()
        self._pipe.__exit__(None, None, None)
        if self._listing is not None:
            self._listing.close()
        faults.maybe_fail(Phase.RESTORE.value, "stream")  # a test's kill with the stream's filesystem mounted
        self._g.umount_all()
        self._check_refused()
        if rc != 0:
            raise ArchiveError(f"stream {self.member} is damaged: zstd: {err.strip() or rc}")
        if self._failure:
            e = self._failure[0]
            raise GuestfsError(f"restoring {self.member}: {e}") from e
