"""The only importer of guestfs: one appliance handle per phase.

`Guest` is a context manager: drives are added, the appliance launches once (on the
accelerator accel.choose() picked, falling back to TCG by itself when a KVM launch
fails), every libguestfs call's RuntimeError becomes a GuestfsError, and the handle is
shut down and closed on exit whatever happened (nova's VFSGuestFS lifecycle).
"""

from __future__ import annotations

import ctypes
import logging
import shlex
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from . import accel
from .errors import GuestfsError, ImgcloneError

log = logging.getLogger("imgclone")


def _import_guestfs() -> Any:
    try:
        import guestfs
    except ImportError as e:
        raise ImgcloneError(
            "the libguestfs Python bindings are missing", "install python3-guestfs, or run `make setup`"
        ) from e
    return guestfs


def _no_error_printing(handle: Any) -> None:
    """libguestfs keeps its error handler per thread, and outside the thread that made the handle the default one
    prints every error on stderr; the GuestfsError raised is the report, so turn the printing off in this thread."""
    try:
        get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
            ("PyCapsule_GetPointer", ctypes.pythonapi)
        )
        set_handler = ctypes.CDLL("libguestfs.so.0").guestfs_set_error_handler
        set_handler.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        set_handler(get_pointer(handle._o, b"guestfs_h"), None, None)
    except (OSError, AttributeError, ValueError) as e:
        log.debug("libguestfs errors in this thread stay on stderr: %s", e)


class Guest:
    """A libguestfs appliance with the given drives; call methods of GuestFS on it directly."""

    def __init__(self, trace: bool = False) -> None:
        self._gfs = _import_guestfs()
        self._trace = trace
        self._drives: list[tuple[str, dict[str, Any]]] = []
        self._g: Any = None
        self._thread = threading.local()  # .quiet: errors not printed in this thread (thread ids are reused)
        self._thread.quiet = True  # the bindings silence them in the thread that makes the handle
        self.accel = ""

    def add_drive(self, path: str, *, readonly: bool, format: str | None = None, label: str | None = None) -> None:
        """Queue a drive; `format` is "raw" or "qcow2" (never probed for writable drives)."""
        opts: dict[str, Any] = {"readonly": readonly}
        if format:
            opts["format"] = format
        if label:
            opts["label"] = label
        self._drives.append((path, opts))

    def _new_handle(self, accel_name: str) -> Any:
        g = self._gfs.GuestFS(python_return_dict=True)
        if self._trace:
            g.set_trace(1)
        if accel_name == "tcg":
            g.set_backend_settings(["force_tcg"])
        g.set_smp(2 if accel_name == "tcg" else 1)
        for path, opts in self._drives:
            g.add_drive_opts(path, **opts)
        return g

    def launch(self) -> None:
        """Start the appliance (once), falling back to TCG when KVM fails."""
        self.accel = accel.choose()
        try:
            g = self._new_handle(self.accel)
        except RuntimeError as e:
            raise GuestfsError(f"libguestfs: {e}") from e
        try:
            g.launch()
        except RuntimeError as e:
            g.close()
            if self.accel != "kvm":
                raise GuestfsError(f"libguestfs appliance did not start: {e}", "run `libguestfs-test-tool`") from e
            log.warning("appliance did not start under KVM (%s); retrying with TCG", e)
            accel.remember("tcg")
            self.accel = "tcg"
            g = self._new_handle("tcg")
            try:
                g.launch()
            except RuntimeError as e2:
                g.close()
                raise GuestfsError(f"libguestfs appliance did not start: {e2}", "run `libguestfs-test-tool`") from e2
        self._g = g

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if self._g is None:
            raise GuestfsError(f"libguestfs call {name} before the appliance was launched")
        fn = getattr(self._g, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if not getattr(self._thread, "quiet", False):
                _no_error_printing(self._g)
                self._thread.quiet = True
            try:
                return fn(*args, **kwargs)
            except RuntimeError as e:
                raise GuestfsError(f"{name}: {e}") from e

        return call

    def appliance_command(self, argv: list[str]) -> str:
        """Run a program of the appliance itself (not of the guest) through libguestfs's `debug sh`, for options
        its API does not pass (mkfs.xfs -m/-i, vgcreate -s); returns its stdout."""
        return str(self.debug("sh", [shlex.join(argv)]))

    def close(self) -> None:
        """Shut the appliance down and drop the handle."""
        g, self._g = self._g, None
        if g is None:
            return
        try:
            g.shutdown()
        except RuntimeError as e:
            log.warning("appliance shutdown: %s", e)
        finally:
            g.close()

    def __enter__(self) -> Guest:
        self.launch()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
