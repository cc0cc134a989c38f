"""The only importer of guestfs: one appliance handle per phase.

`Appliance` is a context manager: drives are added, the appliance launches once (on the
accelerator accel.choose() picked, falling back to TCG by itself when a KVM launch
fails), every libguestfs call's RuntimeError becomes a GuestfsError, and the handle is
shut down and closed on exit whatever happened (nova's VFSGuestFS lifecycle).
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shlex
import signal
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from imgclone.errors import GuestfsError, ImgcloneError
from imgclone.guest.calls import Calls
from imgclone.guest.interface import Guest
from imgclone.host import accel

log = logging.getLogger("imgclone")

# A launch that has not returned by then is stuck (a hypervisor that hangs, as KVM does on some hosts): its QEMU is
# killed, which makes the launch fail (and a KVM launch fall back to TCG). Launches take 15-110 s here under TCG.
LAUNCH_TIMEOUT = {"kvm": 180.0, "tcg": 900.0}
TIMEOUT_ENV = "IMGCLONE_LAUNCH_TIMEOUT"
_running: set[int] = set()  # QEMUs of this process's launched appliances: never the watchdog's to kill
_running_lock = threading.Lock()
SYSROOT = "/sysroot"  # where the API's "/" is, for a program run in the appliance (appliance_command)
SETTLE = "udevadm settle --timeout=60 >/dev/null 2>&1"  # before each appliance_command (see there)
API_DEVICE = re.compile(r"/dev/(sd|vd|hd|ubd)[a-z]+[0-9]*")  # the API's names of drives and their partitions


def launch_timeout(accel_name: str) -> float:
    value = os.environ.get(TIMEOUT_ENV)
    if value:
        try:
            return float(value)
        except ValueError:
            log.warning("%s=%s is not a number of seconds: ignored", TIMEOUT_ENV, value)
    return LAUNCH_TIMEOUT.get(accel_name, LAUNCH_TIMEOUT["tcg"])


def qemu_children(proc: str = "/proc") -> set[int]:
    """QEMU processes whose parent is this process (libguestfs's direct backend forks QEMU itself)."""
    me, found = os.getpid(), set()
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        comm, rest = stat[stat.find("(") + 1 : stat.rfind(")")], stat[stat.rfind(")") + 2 :].split()
        if comm.startswith("qemu-system") and len(rest) > 1 and int(rest[1]) == me:
            found.add(int(entry))
    return found


def kill_now(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


class LaunchWatchdog:
    """Kills the QEMU a launch started when the launch has not returned within `timeout` seconds."""

    def __init__(self, timeout: float, children: Callable[[], set[int]] | None = None,
                 kill: Callable[[int], None] | None = None) -> None:  # fmt: skip
        self.timeout = timeout
        self._children = children or qemu_children
        self._kill = kill or kill_now
        self._before = self._children()
        self._done = threading.Event()
        self.fired = False
        self._thread = threading.Thread(target=self._watch, name="launch-watchdog", daemon=True)

    def __enter__(self) -> LaunchWatchdog:
        self._thread.start()
        return self

    def _watch(self) -> None:
        if self._done.wait(self.timeout):
            return
        with _running_lock:
            stuck = self._children() - self._before - _running
        for pid in stuck:
            self.fired = True
            log.warning("the appliance has not started in %.0f s: stopping its QEMU (pid %d)", self.timeout, pid)
            try:
                self._kill(pid)
            except ProcessLookupError:
                pass

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


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


class Appliance(Calls):
    """A libguestfs appliance with the given drives: the Guest interface (guest/interface.py) over GuestFS, its calls
    forwarded by the methods of Calls (guest/calls.py)."""

    sysroot = SYSROOT
    native = False  # its programs run in a virtual machine (under TCG here)

    def __init__(self, trace: bool = False) -> None:
        self._gfs = _import_guestfs()
        self._trace = trace
        self._drives: list[tuple[str, dict[str, Any]]] = []
        self._g: Any = None
        self._thread = threading.local()  # .quiet: errors not printed in this thread (thread ids are reused)
        self._thread.quiet = True  # the bindings silence them in the thread that makes the handle
        self.accel = ""
        self._pid = 0  # the launched appliance's QEMU

    def add_drive(self, path: str, *, readonly: bool, format: str | None = None, label: str | None = None,
                  discard: bool = False) -> None:  # fmt: skip
        """Queue a drive; `format` is "raw" or "qcow2" (never probed for writable drives); discard: fstrim in the
        appliance frees the image's blocks (or the device's) where it can."""
        opts: dict[str, Any] = {"readonly": readonly}
        if discard:
            opts["discard"] = "besteffort"
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
        g.set_smp(accel.vcpus(accel_name))
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
            self._launch(g, self.accel)
        except RuntimeError as e:
            g.close()
            if self.accel != "kvm":
                raise GuestfsError(f"libguestfs appliance did not start: {e}", "run `libguestfs-test-tool`") from e
            log.warning("appliance did not start under KVM (%s); retrying with TCG", e)
            accel.remember("tcg")
            self.accel = "tcg"
            g = self._new_handle("tcg")
            try:
                self._launch(g, "tcg")
            except RuntimeError as e2:
                g.close()
                raise GuestfsError(f"libguestfs appliance did not start: {e2}", "run `libguestfs-test-tool`") from e2
        self._g = g

    def _launch(self, g: Any, accel_name: str) -> None:
        """g.launch() under a LaunchWatchdog; a stuck launch fails with a RuntimeError that says so."""
        with LaunchWatchdog(launch_timeout(accel_name)) as dog:
            try:
                g.launch()
            except RuntimeError as e:
                if dog.fired:
                    # libguestfs's own text is a page of debugging advice about a crash: this was no crash
                    raise RuntimeError(f"no answer within {dog.timeout:.0f} s; {TIMEOUT_ENV} sets the limit") from e
                raise
        try:
            pid = int(g.get_pid())
        except (RuntimeError, AttributeError):
            return
        self._pid = pid
        with _running_lock:
            _running.add(pid)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """The libguestfs call `name` (the interface's methods, guest/calls.py, come here): its RuntimeError becomes
        a GuestfsError that names the call."""
        if self._g is None:
            raise GuestfsError(f"libguestfs call {name} before the appliance was launched")
        fn = getattr(self._g, name)
        if not getattr(self._thread, "quiet", False):
            _no_error_printing(self._g)
            self._thread.quiet = True
        try:
            return fn(*args, **kwargs)
        except RuntimeError as e:
            raise GuestfsError(f"{name}: {e}") from e

    def appliance_command(self, argv: list[str]) -> str:
        """Run a program of the appliance itself (not of the guest) through libguestfs's `debug sh`, for options
        its API does not pass (mkfs.xfs -m/-i, vgcreate -s); returns its stdout.

        The API's device names (/dev/sda1) are not the appliance kernel's: libguestfs translates them in its own
        calls, but a shell gets them as they are, and the kernel may enumerate the appliance's own disk first
        (in 2 of 10 launches measured; the first drive added is then its /dev/sdb). mkfs.xfs then found no
        /dev/sda1 (in CI); with two targets the API's /dev/sdb1 would have been the first target's. So each
        argument that is a device name of the API is given as the drive's /dev/disk/guestfs/<label> path
        (labelled drives only: a device of a drive without a label is refused here). `udevadm settle` first:
        libguestfs's own calls wait for udev before they touch a device; `debug sh` does not."""
        paths = {dev: f"/dev/disk/guestfs/{label}" for label, dev in self.list_disk_labels().items()}
        args = [paths.get(arg, arg) for arg in argv]
        unnamed = [arg for arg in args if API_DEVICE.fullmatch(arg)]
        if unnamed:
            raise GuestfsError(f"{argv[0]}: {unnamed[0]} is on a drive without a label; its name in the appliance's "
                               "kernel is not known (add the drive with a label)")  # fmt: skip
        return str(self.debug("sh", [f"{SETTLE}; {shlex.join(args)}"]))

    def drive_path(self, index: int) -> str:
        """/dev/disk/guestfs/<label>: the appliance's kernel may not give the drives /dev/sda... in the order added."""
        label = self._drives[index][1].get("label")
        if not label:
            raise GuestfsError(f"drive {index} was added without a label: its name in the appliance is not known")
        return f"/dev/disk/guestfs/{label}"

    def close(self) -> None:
        """Shut the appliance down and drop the handle."""
        g, self._g = self._g, None
        if g is None:
            return
        with _running_lock:
            _running.discard(self._pid)
        try:
            g.shutdown()
        except RuntimeError as e:
            log.warning("appliance shutdown: %s", e)
        finally:
            g.close()

    def __enter__(self) -> Appliance:
        self.launch()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _is_a_guest(appliance: Appliance) -> Guest:
    """Never called: mypy checks here that Appliance has every call of the Guest interface, typed alike."""
    return appliance
