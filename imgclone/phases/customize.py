"""Phase 2, customize: the clone is changed offline, under its altinst_/alt_ names, on this host or in one appliance.

Steps in order: mount the clone; -R resolv.conf; -n managed-client files; -l packages
(-w/-b/-F/-f/-I) with the clone's own dpkg or rpm and no network; -O device reset; -c
console; -x first-boot service; -s the user's script, run on the host with the clone
mounted at /alt_inst (--via host: mounted there already; through the appliance: by
libguestfs's FUSE export); unmount. Every refusal (missing files, packages not in the
directory, a busy /alt_inst) happens before the clone is opened.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from imgclone.errors import CommandError, GuestfsError, ImgcloneError, UsageError
from imgclone.guest import session
from imgclone.guest.interface import Guest
from imgclone.guest.steps import Context, run_phase, steps
from imgclone.host.run import HOST, Result
from imgclone.model import journal as state
from imgclone.model.layout import Layout
from imgclone.phases import clonefiles, packages
from imgclone.phases.phase import Phase
from imgclone.storage import build

log = logging.getLogger("imgclone")

PKG_CACHE = "/var/cache/imgclone/packages"
POLICY_RC_D = "/usr/sbin/policy-rc.d"
INSTALLED_QUERY = {
    "deb": "dpkg-query -W -f '${Package}\\t${Version}\\t${db:Status-Status}\\n'",
    "rpm": "rpm -qa --qf '%{NAME}\\t%{VERSION}-%{RELEASE}\\tinstalled\\n'",
}


@dataclass(frozen=True)
class CustomizeOptions:
    """The Phase 2 flags of alt_disk_copy."""

    packages: packages.Request | None = None  # -l with -w/-b/-F/-f/-I
    script: str | None = None  # -s, run on the host with the clone at alt_inst
    resolv_conf: str | None = None  # -R
    first_boot: str | None = None  # -x
    managed_client: bool = False  # -n
    device_reset: bool = False  # -O
    console: str | None = None  # -c (with -O)
    alt_inst: str = "/alt_inst"

    @property
    def requested(self) -> bool:
        return any([self.packages, self.script, self.resolv_conf, self.first_boot, self.managed_client,
                    self.device_reset, self.console])  # fmt: skip


@dataclass(kw_only=True)
class Customize(Context):
    """One Phase 2 run: the alternate's journal, its current names, the options, the packages found."""

    journal: state.Journal
    layout: Layout
    opts: CustomizeOptions
    available: dict[str, packages.Package] = field(default_factory=dict)


def prepare(targets: tuple[str, ...], opts: CustomizeOptions) -> Customize:
    """Every refusal of Phase 2, before the appliance starts."""
    journal = state.load_alternate(targets)
    ctx = Customize(targets=targets, journal=journal, layout=journal.current_layout(), opts=opts)
    if opts.packages:
        ctx.available = packages.scan(opts.packages.directory)
        packages.select(opts.packages, ctx.available, {})  # names missing from the directory
        if not ctx.available:
            raise UsageError(f"-l {opts.packages.directory}: holds no .deb or .rpm package")
    if opts.script:
        check_mountpoint(opts.alt_inst)
    return ctx


def check_mountpoint(path: str) -> None:
    """The FUSE mount point for -s: absent, or an empty directory that is not a mount point."""
    p = Path(path)
    if os.path.ismount(p):
        raise UsageError(f"{path} is a mount point already", "unmount it (or `imgclone alt sleep`) first")
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise UsageError(f"{path} is not an empty directory", "the clone is mounted there for -s")


def customize(targets: tuple[str, ...], opts: CustomizeOptions, *, debug: bool = False,
              shared: session.Session | None = None) -> Customize:  # fmt: skip
    """Run Phase 2 on the targets of an earlier Phase 1 (on the `shared` session's clone when the command has one)."""
    ctx = prepare(targets, opts)
    run_phase(Phase.CUSTOMIZE.value, ctx, STEPS, session.opened(ctx.journal.drives, shared, layout=ctx.layout,
                                                              debug=debug))  # fmt: skip
    state.mark_phase(targets, "2", state.PhaseRecord(state.now(), ctx.timings, tuple(ctx.actions), tuple(ctx.notes)))
    return ctx


def mount_clone(ctx: Customize) -> None:
    g = ctx.g
    if ctx.layout.vgs:
        g.vg_activate(True, [vg.name for vg in ctx.layout.vgs])
    build.mount_tree(g, build.devices(g, ctx.layout))


def replace_resolv_conf(ctx: Customize) -> None:
    """-R: the clone's /etc/resolv.conf becomes a copy of FILE (a symlink there is replaced)."""
    if not ctx.opts.resolv_conf:
        return
    g = ctx.g
    was = f" (was a symlink to {g.readlink('/etc/resolv.conf')})" if g.is_symlink("/etc/resolv.conf") else ""
    g.rm_f("/etc/resolv.conf")
    g.upload(ctx.opts.resolv_conf, "/etc/resolv.conf")
    g.chmod(0o644, "/etc/resolv.conf")
    ctx.actions.append(f"replaced /etc/resolv.conf with {ctx.opts.resolv_conf}{was}")


def copy_managed_client(ctx: Customize) -> None:
    """-n: this host's management identity (the /.rhosts and /etc/niminfo analogs) into the clone."""
    if not ctx.opts.managed_client:
        return
    present = [p for p in clonefiles.MANAGED_CLIENT_PATHS if os.path.lexists(p)]
    if not present:
        ctx.notes.append("-n: this host has none of " + ", ".join(clonefiles.MANAGED_CLIENT_PATHS))
        return
    with tempfile.NamedTemporaryFile(suffix=".tar") as tmp:
        HOST.run(["tar", "--create", "--xattrs", "--acls", "--numeric-owner", "--file", tmp.name, "--directory", "/",
                  "--", *(p.lstrip("/") for p in present)])  # fmt: skip
        ctx.g.tar_in(tmp.name, "/", xattrs=True, acls=True)
    ctx.actions.append("copied managed-client files: " + ", ".join(present))


def package_kind(g: Guest) -> str:
    """deb or rpm: the clone's own package manager."""
    if g.exists("/usr/bin/dpkg"):
        return "deb"
    if g.exists("/usr/bin/rpm"):
        return "rpm"
    raise ImgcloneError("the clone has neither dpkg nor rpm", "-l needs one of them in the clone")


def install_packages(ctx: Customize) -> None:
    """-l: install (-w/-b) and update (-F/-f, update_all) from the directory, offline, with the clone's tools."""
    req = ctx.opts.packages
    if req is None:
        return
    g = ctx.g
    kind = package_kind(g)
    installed = packages.parse_installed(g.sh(INSTALLED_QUERY[kind]))
    chosen, notes = packages.select(req, ctx.available, installed)
    ctx.notes += notes
    wrong = [p.path.name for p in chosen if p.kind != kind]
    if wrong:
        raise ImgcloneError(f"the clone uses {kind} packages; cannot install {', '.join(wrong)}")
    if not chosen:
        ctx.notes.append(f"-l {req.directory}: nothing to install or update")
        return
    with _staged(g, chosen) as files:
        if kind == "deb":
            cmd = ["env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "--install", *req.flags, *files]
        else:
            cmd = ["rpm", "-Uvh", *req.flags, *files]
        try:
            g.sh(shlex.join(cmd))
        except GuestfsError as e:
            names = ", ".join(p.name for p in chosen)
            hint = "the packages' dependencies must be installed or in the -l directory"
            raise ImgcloneError(f"installing {names} in the clone failed: {_last_line(e.message)}", hint) from e
    for p in chosen:
        ctx.actions.append(f"installed {p.name} {p.version} from {p.path.name}")


@contextmanager
def _staged(g: Guest, chosen: list[packages.Package]) -> Iterator[list[str]]:
    """Upload the packages into the clone (and a policy-rc.d so that no service starts); remove both after."""
    g.mkdir_p(PKG_CACHE)
    policy = not g.exists(POLICY_RC_D)
    if policy:
        g.write(POLICY_RC_D, b"#!/bin/sh\nexit 101\n")
        g.chmod(0o755, POLICY_RC_D)
    files = []
    try:
        for p in chosen:
            remote = f"{PKG_CACHE}/{p.path.name}"
            g.upload(str(p.path), remote)
            files.append(remote)
        yield files
    finally:
        g.rm_rf(PKG_CACHE)
        if policy:
            g.rm_f(POLICY_RC_D)


def _last_line(message: str) -> str:
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower() or "depends on" in ln]
    return (errors or lines or [message])[-1]


def reset_devices(ctx: Customize) -> None:
    """-O: nothing that ties the clone to this machine: machine-id, ssh host keys, MAC bindings, random seed."""
    if not ctx.opts.device_reset:
        return
    g = ctx.g
    if g.exists("/etc/machine-id"):
        g.write("/etc/machine-id", b"")  # empty: systemd makes a new one on the first boot
        ctx.actions.append("emptied /etc/machine-id")
    for path in clonefiles.MACHINE_FILES:
        if g.exists(path) and not g.is_symlink(path):
            g.rm_f(path)
            ctx.actions.append(f"removed {path}")
    keys = g.glob_expand(clonefiles.SSH_HOST_KEYS)
    if keys:
        for key in keys:
            g.rm_f(key)
        _enable_unit(g, clonefiles.SSHKEYS_UNIT, clonefiles.SSHKEYS_UNIT_TEXT)
        ctx.actions.append(f"removed {len(keys)} ssh host key file(s); {clonefiles.SSHKEYS_UNIT} makes new ones")
    for pattern in clonefiles.MAC_CONFIG_GLOBS:
        for path in g.glob_expand(pattern):
            text = g.read_file(path).decode("utf-8", "surrogateescape")
            new = clonefiles.without_mac_lines(text)
            if new != text:
                g.write(path, new.encode("utf-8", "surrogateescape"))
                ctx.actions.append(f"removed the MAC binding from {path}")
    for pattern in clonefiles.MAC_REPORT_GLOBS:
        for path in g.glob_expand(pattern):
            if g.is_file(path) and clonefiles.mentions_mac(g.read_file(path).decode("utf-8", "replace")):
                ctx.notes.append(f"-O: {path} matches on a MAC address; edit it for the new machine")


def set_console(ctx: Customize) -> None:
    """-c: console= on the kernel command line (grub.cfg follows in Phase 3) and a getty on a serial console."""
    console = ctx.opts.console
    if not console:
        return
    g = ctx.g
    text = g.read_file("/etc/default/grub").decode() if g.exists("/etc/default/grub") else ""
    g.write("/etc/default/grub", clonefiles.with_console(text, console).encode())
    ctx.actions.append(f"set console={console} in /etc/default/grub")
    getty = clonefiles.getty_for(console)
    if getty:
        g.mkdir_p(f"{clonefiles.UNIT_DIR}/getty.target.wants")
        g.ln_sf("/lib/systemd/system/serial-getty@.service", f"{clonefiles.UNIT_DIR}/getty.target.wants/{getty}")
        ctx.actions.append(f"enabled {getty}")


def add_first_boot(ctx: Customize) -> None:
    """-x: the script runs once on the clone's first boot, after all filesystems are mounted."""
    if not ctx.opts.first_boot:
        return
    g = ctx.g
    g.mkdir_p(os.path.dirname(clonefiles.FIRSTBOOT_SCRIPT))
    g.upload(ctx.opts.first_boot, clonefiles.FIRSTBOOT_SCRIPT)
    g.chmod(0o755, clonefiles.FIRSTBOOT_SCRIPT)
    _enable_unit(g, clonefiles.FIRSTBOOT_UNIT, clonefiles.FIRSTBOOT_UNIT_TEXT)
    ctx.actions.append(f"first-boot script {ctx.opts.first_boot} → {clonefiles.FIRSTBOOT_SCRIPT} "
                       f"({clonefiles.FIRSTBOOT_UNIT})")  # fmt: skip


def _enable_unit(g: Guest, name: str, text: str) -> None:
    unit = f"{clonefiles.UNIT_DIR}/{name}"
    g.write(unit, text.encode())
    g.mkdir_p(f"{clonefiles.UNIT_DIR}/multi-user.target.wants")
    g.ln_sf(unit, f"{clonefiles.UNIT_DIR}/multi-user.target.wants/{name}")


def run_script(ctx: Customize) -> None:
    """-s: the user's script on the host, with the clone mounted at /alt_inst; its exit status counts. Worked on
    from the host (--via host) the clone is mounted there already; from the appliance it is exported there."""
    script = ctx.opts.script
    if not script:
        return
    if ctx.g.native:
        mp = ctx.g.sysroot
        res = _run(script, mp)
    else:
        mp = ctx.opts.alt_inst
        created = not os.path.exists(mp)
        os.makedirs(mp, exist_ok=True)
        try:
            with serve_fuse(ctx.g, mp):
                res = _run(script, mp)
        finally:
            if created:
                os.rmdir(mp)
    # what the script wrote reaches the disks now, not at unmount: a run killed in between would lose it with the
    # appliance's page cache (the journal does not mark Phase 2 done, so a rerun runs the script again)
    ctx.g.sync()
    for line in (res.text + res.stderr).splitlines():
        log.info("%s: %s", os.path.basename(script), line)
    if res.returncode != 0:
        last = _last_line(res.stderr or res.text) if (res.stderr or res.text).strip() else "no output"
        raise ImgcloneError(f"-s {script} exited with {res.returncode}: {last}")
    ctx.actions.append(f"ran {script} with the clone at {mp}")


def _run(script: str, mountpoint: str) -> Result:
    try:
        return HOST.run([script], env={"ALT_INST": mountpoint}, check=False)
    except CommandError as e:
        raise ImgcloneError(f"-s {script}: {e.message}") from e


@contextmanager
def serve_fuse(g: Guest, mountpoint: str) -> Iterator[None]:
    """The mounted clone exported at mountpoint (libguestfs mount-local) while the block runs."""
    g.mount_local(mountpoint)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            g.mount_local_run()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            errors.append(e)

    thread = threading.Thread(target=serve, name="mount-local", daemon=True)
    thread.start()
    try:
        with _fuse_messages_to_debug():
            yield
    finally:
        # guestunmount retries while the mount is busy; then mount_local_run returns
        HOST.run(["guestunmount", "--quiet", mountpoint], check=False)
        thread.join(timeout=60)
        if thread.is_alive():
            HOST.run(["fusermount", "-u", "-z", mountpoint], check=False)
            thread.join(timeout=30)
    if errors:
        raise errors[0]


@contextmanager
def _fuse_messages_to_debug() -> Iterator[None]:
    """libguestfs prints an error line for every failed FUSE lookup (lstatns of a file that does not exist yet,
    which is how every file gets created): send our stderr to a file meanwhile and log it at debug level."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode("utf-8", "replace").splitlines():
                log.debug("mount-local: %s", line)


def unmount(ctx: Customize) -> None:
    g = ctx.g
    g.sync()
    g.umount_all()


STEPS = steps(mount_clone, replace_resolv_conf, copy_managed_client, install_packages, reset_devices, set_console,
              add_first_boot, run_script, unmount)  # fmt: skip
