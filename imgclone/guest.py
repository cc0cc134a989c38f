"""The only importer of guestfs: one appliance handle per phase.

`Guest` is a context manager: drives are added, the appliance launches once (on the
accelerator accel.choose() picked, falling back to TCG by itself when a KVM launch
fails), every libguestfs call's RuntimeError becomes a GuestfsError, and the handle is
shut down and closed on exit whatever happened (nova's VFSGuestFS lifecycle).
"""

from __future__ import annotations

import logging
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


class Guest:
    """A libguestfs appliance with the given drives; call methods of GuestFS on it directly."""

    def __init__(self, trace: bool = False) -> None:
        self._gfs = _import_guestfs()
        self._trace = trace
        self._drives: list[tuple[str, dict[str, Any]]] = []
        self._g: Any = None
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
            try:
                return fn(*args, **kwargs)
            except RuntimeError as e:
                raise GuestfsError(f"{name}: {e}") from e

        return call

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
