"""Which QEMU accelerator works here: KVM when a guest really boots with it, else TCG.

On some hosts /dev/kvm exists but guests hang or abort under it, and libguestfs's
default (`accel=kvm:tcg`) then hangs forever. So before the first launch we boot the
host's kernel under KVM with a short timeout and look for its panic message (no initrd
is given, so a working kernel panics within a second or two). The answer is remembered in
the cache directory, keyed by the host kernel and QEMU; IMGCLONE_ACCEL=kvm|tcg forces it.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import platform
from pathlib import Path

from imgclone.errors import CommandError, UsageError
from imgclone.host.run import HOST, Runner

log = logging.getLogger("imgclone")

ENV = "IMGCLONE_ACCEL"
VCPUS_ENV = "IMGCLONE_VCPUS"
PROBE_TIMEOUT = 20.0
QEMU = "/usr/bin/qemu-system-x86_64"


def cache_dir() -> Path:
    """Per-user cache for facts about this host (accelerator, fixtures)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imgclone"


def _probe_kernel() -> str | None:
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    return kernels[-1] if kernels else None


def _cache_key(kernel: str) -> str:
    st = os.stat(QEMU) if os.path.exists(QEMU) else None
    return f"{platform.release()}|{kernel}|{st.st_mtime_ns if st else 0}"


def probe_kvm(kernel: str, runner: Runner = HOST) -> bool:
    """Boot `kernel` under KVM; True when it reached its panic in time."""
    argv = [QEMU, "-accel", "kvm", "-cpu", "max", "-m", "256", "-display", "none", "-nodefaults",
            "-no-user-config", "-no-reboot", "-serial", "stdio", "-kernel", kernel,
            "-append", "console=ttyS0 panic=-1 quiet"]  # fmt: skip
    try:
        res = runner.run(argv, check=False, timeout=PROBE_TIMEOUT)
    except CommandError as e:
        log.debug("KVM probe: %s", e)
        return False
    return b"Kernel panic" in res.stdout


def choose(runner: Runner = HOST) -> str:
    """Return "kvm" or "tcg" for this host (forced, remembered, or probed once)."""
    forced = os.environ.get(ENV, "").strip().lower()
    if forced:
        if forced not in ("kvm", "tcg"):
            raise UsageError(f"{ENV}={forced}: expected kvm or tcg")
        return forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    kernel = _probe_kernel()
    if kernel is None:
        return "kvm"  # nothing to probe with; launch() still falls back on failure
    cache = cache_dir() / "accel.json"
    key = _cache_key(kernel)
    try:
        saved = json.loads(cache.read_text())
        if saved.get("key") == key and saved.get("accel") in ("kvm", "tcg"):
            return str(saved["accel"])
    except (OSError, ValueError):
        pass
    log.info("checking whether KVM can run guests here (once; remembered in %s)", cache)
    accel = "kvm" if probe_kvm(kernel, runner) else "tcg"
    if accel == "tcg":
        log.info("KVM does not run guests on this host: using TCG (software emulation, slower)")
    remember(accel, key)
    return accel


def remember(accel: str, key: str | None = None) -> None:
    """Store the choice (also used when a KVM launch failed despite the probe).

    Written to a file of this process's own, then renamed over the cache: imgclone runs at the same time (a test
    suite's workers) read it while another writes, and must find the old choice or the new one, never half a file
    (which reads as no choice: the probe again, up to PROBE_TIMEOUT)."""
    kernel = _probe_kernel() or ""
    cache = cache_dir() / "accel.json"
    partial = cache.with_name(f".{cache.name}.{os.getpid()}")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"accel": accel, "key": key or _cache_key(kernel)}) + "\n")
        os.replace(partial, cache)
    except OSError as e:
        partial.unlink(missing_ok=True)
        log.debug("cannot remember accelerator in %s: %s", cache, e)


def vcpus(accel: str) -> int:
    """vCPUs of an appliance or a boot-test VM: under TCG two (QEMU's multi-threaded TCG runs one host thread each,
    so one guest uses two cores), under KVM one; IMGCLONE_VCPUS=N sets it (a host running several at once, as the
    test suite on two workers does, gains from one each)."""
    value = os.environ.get(VCPUS_ENV)
    if value:
        if not value.isdigit() or not 1 <= int(value) <= 64:
            raise UsageError(f"{VCPUS_ENV}={value}: expected a number of vCPUs from 1 to 64")
        return int(value)
    return 2 if accel == "tcg" else 1


def qemu_accel_args(accel: str) -> list[str]:
    """QEMU arguments for the chosen accelerator."""
    return ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg", "-cpu", "max"]
