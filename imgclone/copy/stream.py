"""imgclone copy's Phase 1 in one pass: a capture thread writes the archive into a pipe that restore reads.

The capture writes the archive as it does to stdout (the first manifest with the layout, the streams, the final
manifest at the end); restore plans from the first manifest, restores each stream as it arrives and checks the
streams against the final manifest. With --archive PATH a tee thread also writes the bytes to PATH.partial, renamed
to PATH once the capture has completed. No temporary archive is written.

Either side failing stops the other. A capture that fails closes its end of the pipe, and restore finds the archive
incomplete; a restore that fails closes its end, and the capture's next write fails (EPIPE), which ends it and its
appliance. The error reported is the cause: the capture's own failure, else the restore's.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from imgclone.errors import ArchiveError, ImgcloneError
from imgclone.host.run import set_pipe_size

log = logging.getLogger("imgclone")

T = TypeVar("T")
CHUNK = 1 << 20
PIPE_SIZE = 1 << 20  # fewer wake-ups than the default 64 KiB between two 32 MiB parts
JOIN_TIMEOUT = 600.0  # a capture still launching its appliance finishes that first; never wait forever


def _pipe() -> tuple[int, int]:
    r, w = os.pipe()
    set_pipe_size(w, PIPE_SIZE)
    return r, w


def broken_pipe(e: BaseException) -> bool:
    """Whether an error is only the consequence of the reader going away (EPIPE somewhere in its causes)."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, BrokenPipeError) or (isinstance(seen, OSError) and seen.errno == errno.EPIPE):
            return True
        if "Broken pipe" in str(seen):  # libguestfs and tar say it in words
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class CaptureFeed(Generic[T]):
    """The capture running in a thread into a pipe; restore reads `path`. Use as a context manager."""

    def __init__(self, capture: Callable[[str], T], keep: str | None = None) -> None:
        self._capture = capture
        self._keep = keep
        self.result: T | None = None
        self.error: BaseException | None = None
        self._complete = False  # the tee read the capture's output to its end
        self._tee_error: ImgcloneError | None = None
        if keep is not None:
            try:
                self._file = open(keep + ".partial", "wb")  # noqa: SIM115 - closed by the tee thread
            except OSError as e:
                raise ArchiveError(f"--archive {keep}: cannot write the archive: {e.strerror or e}") from e
        r, w = _pipe()
        self._capture_w = w
        self._threads = [threading.Thread(target=self._run_capture, name="capture", daemon=True)]
        if keep is None:
            self._read_fd = r
        else:
            r2, w2 = _pipe()
            self._read_fd = r2
            self._threads.append(threading.Thread(target=self._tee, args=(r, w2), name="tee", daemon=True))

    @property
    def path(self) -> str:
        """What restore opens: the read end of the pipe."""
        return f"/dev/fd/{self._read_fd}"

    def __enter__(self) -> CaptureFeed[T]:
        for t in self._threads:
            t.start()
        return self

    def _run_capture(self) -> None:
        try:
            self.result = self._capture(f"/dev/fd/{self._capture_w}")
        except BaseException as e:  # noqa: B036 - handed to the main thread
            self.error = e
        finally:
            os.close(self._capture_w)

    def _tee(self, r: int, w: int) -> None:
        try:
            with os.fdopen(r, "rb", buffering=0) as src, os.fdopen(w, "wb") as dst, self._file as keep:
                while chunk := src.read(CHUNK):
                    keep.write(chunk)
                    dst.write(chunk)
                self._complete = True
        except BrokenPipeError:
            self._complete = False  # restore stopped reading: closing src stops the capture in turn
        except OSError as e:  # --archive's disk: the capture stops on EPIPE, restore on the early end
            self._complete = False
            self._tee_error = ArchiveError(f"--archive {self._keep}: cannot write the archive: {e.strerror or e}")

    def stop(self) -> None:
        """Restore gave up: close its end of the pipe, which stops the capture (and the tee)."""
        if self._read_fd >= 0:
            os.close(self._read_fd)
            self._read_fd = -1

    def join(self) -> None:
        """Wait for the capture (and the tee); keep --archive PATH when the capture completed."""
        for t in self._threads:
            t.join(JOIN_TIMEOUT)
            if t.is_alive():
                log.error("the %s thread did not stop within %.0f s", t.name, JOIN_TIMEOUT)
        if self._keep is not None:
            if self.error is None and self._complete:
                os.replace(self._keep + ".partial", self._keep)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._keep + ".partial")

    def cause(self) -> BaseException | None:
        """The feed's own failure: the capture's (unless it only met the reader's end), else the tee's."""
        if self.error is not None and not broken_pipe(self.error):
            return self.error
        return self._tee_error or self.error

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.stop()
        self.join()
        cause = self.cause()
        if exc is None:
            if cause is not None:
                raise cause
            return
        if not isinstance(exc, Exception) or cause is None or broken_pipe(cause):
            return  # an interrupt, or the restore's own failure: it is the news
        # the feed failed first (restore only saw the archive end early); what restore says of the targets (partly
        # written, wiped) still holds
        if isinstance(exc, ImgcloneError) and exc.hint and isinstance(cause, ImgcloneError):
            cause.hint = f"{cause.hint}; {exc.hint}" if cause.hint else exc.hint
        raise cause from exc
