"""Phase 2 steps on an in-memory clone: what -R, -O, -c, -x and -l write, and what is refused first."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from fixtures.debs import build_deb
from imgclone.errors import GuestfsError, ImgcloneError, PhaseStateError, UsageError
from imgclone.model.journal import Journal
from imgclone.model.layout import Layout
from imgclone.phases import customize as cz
from imgclone.phases.packages import make_request, scan
from tests.fakes import FakeGuest, FakeRunner


def sh_reply(outputs: dict[str, str] | None = None, fail: str | None = None) -> Callable[[str], str]:
    """sh's reply: the output of the first key of `outputs` found in the command, else ""; a command that contains
    `fail` fails as dpkg does."""

    def sh(command: str) -> str:
        if fail and fail in command:
            raise GuestfsError("sh: dpkg: dependency problems prevent configuration of hello:\n"
                               " hello depends on libmissing; however:\n  Package libmissing is not installed.\n"
                               "dpkg: error processing package hello (--install):")  # fmt: skip
        return next((out for key, out in (outputs or {}).items() if key in command), "")

    return sh


def ran(g: FakeGuest) -> list[str]:
    """What ran in the clone, in order: each sh command, <sync> for a sync, <fuse MOUNTPOINT> for an export."""
    shown = {"sh": lambda args: args[0], "sync": lambda args: "<sync>", "mount_local": lambda args: f"<fuse {args[0]}>"}
    return [shown[c.name](c.args) for c in g.calls if c.name in shown]


def _ctx(g: FakeGuest, **opts: Any) -> cz.Customize:
    ctx = cz.Customize(targets=("t.img",), journal=Journal(), layout=Layout(), opts=cz.CustomizeOptions(**opts))
    ctx.guest = g
    return ctx


def test_resolv_conf_replaces_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "resolv").write_text("nameserver 192.0.2.1\n")
    g = FakeGuest(links={"/etc/resolv.conf": "../run/systemd/resolve/stub-resolv.conf"})
    ctx = _ctx(g, resolv_conf=str(tmp_path / "resolv"))
    cz.replace_resolv_conf(ctx)
    assert g.files["/etc/resolv.conf"] == b"nameserver 192.0.2.1\n" and "/etc/resolv.conf" not in g.links
    assert "was a symlink to ../run/systemd/resolve/stub-resolv.conf" in ctx.actions[0]


def test_device_reset_forgets_the_machine() -> None:
    g = FakeGuest(files={
        "/etc/machine-id": b"0123456789abcdef0123456789abcdef\n",
        "/var/lib/systemd/random-seed": b"seed",
        "/etc/udev/rules.d/70-persistent-net.rules": b'SUBSYSTEM=="net", ATTR{address}=="52:54:00:12:34:56"\n',
        "/etc/ssh/ssh_host_ed25519_key": b"k", "/etc/ssh/ssh_host_ed25519_key.pub": b"p", "/etc/ssh/sshd_config": b"",
        "/etc/NetworkManager/system-connections/eth0.nmconnection": b"[ethernet]\nmac-address=52:54:00:12:34:56\n",
        "/etc/systemd/network/10-lan.network": b"[Match]\nMACAddress=52:54:00:12:34:56\n",
    })  # fmt: skip
    ctx = _ctx(g, device_reset=True)
    cz.reset_devices(ctx)
    assert g.files["/etc/machine-id"] == b""
    assert "/var/lib/systemd/random-seed" not in g.files and "/etc/udev/rules.d/70-persistent-net.rules" not in g.files
    assert not g.glob_expand("/etc/ssh/ssh_host_*") and "/etc/ssh/sshd_config" in g.files
    assert b"ssh-keygen -A" in g.files["/etc/systemd/system/imgclone-sshkeys.service"]
    assert "/etc/systemd/system/multi-user.target.wants/imgclone-sshkeys.service" in g.links
    assert g.files["/etc/NetworkManager/system-connections/eth0.nmconnection"] == b"[ethernet]\n"
    assert any("10-lan.network matches on a MAC address" in n for n in ctx.notes)
    assert g.files["/etc/systemd/network/10-lan.network"].startswith(b"[Match]\nMACAddress"), "reported, not edited"


def test_console_sets_cmdline_and_serial_getty() -> None:
    g = FakeGuest(files={"/etc/default/grub": b'GRUB_CMDLINE_LINUX="quiet console=tty0"\n'})
    cz.set_console(_ctx(g, device_reset=True, console="ttyS1,115200"))
    assert g.files["/etc/default/grub"] == b'GRUB_CMDLINE_LINUX="quiet console=ttyS1,115200"\n'
    assert g.links["/etc/systemd/system/getty.target.wants/serial-getty@ttyS1.service"].endswith(
        "serial-getty@.service"
    )


def test_first_boot_unit_runs_once(tmp_path: Path) -> None:
    script = tmp_path / "fb.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    g = FakeGuest()
    cz.add_first_boot(_ctx(g, first_boot=str(script)))
    assert g.files["/usr/local/lib/imgclone/firstboot"] == script.read_bytes()
    assert g.modes["/usr/local/lib/imgclone/firstboot"] == 0o755
    unit = g.files["/etc/systemd/system/imgclone-firstboot.service"].decode()
    for line in ("After=local-fs.target", "ConditionPathExists=/usr/local/lib/imgclone/firstboot",
                 "ExecStopPost=/bin/systemctl --no-reload disable imgclone-firstboot.service",
                 "StandardOutput=journal+console"):  # fmt: skip
        assert line in unit
    assert "/etc/systemd/system/multi-user.target.wants/imgclone-firstboot.service" in g.links


def test_packages_installed_with_the_clones_dpkg_and_cleaned_up(tmp_path: Path) -> None:
    build_deb(tmp_path, "hello", "1.0")
    build_deb(tmp_path, "libfoo", "2.0")
    installed = "libfoo\t1.0\tinstalled\nbash\t5.2\tinstalled\n"
    g = FakeGuest({"sh": sh_reply({"dpkg-query": installed})}, files={"/usr/bin/dpkg": b""})
    req = make_request(str(tmp_path), install=["hello"], fixes=["update_all"], flags=["--force-confnew"])
    ctx = _ctx(g, packages=req)
    ctx.available = scan(tmp_path)
    cz.install_packages(ctx)
    install = ran(g)[-1]
    assert install.startswith("env DEBIAN_FRONTEND=noninteractive dpkg --install --force-confnew ")
    assert "/var/cache/imgclone/packages/hello_1.0_all.deb" in install and "libfoo_2.0_all.deb" in install
    assert ctx.actions == ["installed hello 1.0 from hello_1.0_all.deb", "installed libfoo 2.0 from libfoo_2.0_all.deb"]
    assert not g.glob_expand("/var/cache/imgclone/*") and "/usr/sbin/policy-rc.d" not in g.files


def test_failed_install_names_the_package(tmp_path: Path) -> None:
    build_deb(tmp_path, "hello", "1.0", depends="libmissing")
    g = FakeGuest({"sh": sh_reply(fail="dpkg --install")}, files={"/usr/bin/dpkg": b""})
    ctx = _ctx(g, packages=make_request(str(tmp_path), install=["hello"]))
    ctx.available = scan(tmp_path)
    with pytest.raises(ImgcloneError, match=r"installing hello in the clone failed: dpkg: error processing package"):
        cz.install_packages(ctx)
    assert "/usr/sbin/policy-rc.d" not in g.files, "the policy-rc.d is removed after a failure too"


def test_clone_without_a_package_manager() -> None:
    with pytest.raises(ImgcloneError, match="neither dpkg nor rpm"):
        cz.package_kind(FakeGuest())


def test_what_the_script_wrote_is_synced_before_the_step_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """-s: the clone is synced after the script, so a run killed before unmount keeps what the script wrote (the
    rerun then runs it again, as the script ran)."""
    script = tmp_path / "s.sh"
    host = FakeRunner({(str(script),): "done\n"})
    g = FakeGuest()
    monkeypatch.setattr(cz, "HOST", host)
    monkeypatch.setattr(cz, "serve_fuse", lambda guest, mp: nullcontext(guest.mount_local(mp)))  # FUSE left out
    cz.run_script(_ctx(g, script=str(script), alt_inst=str(tmp_path / "alt")))
    assert host.calls == [[str(script)]]
    assert ran(g) == [f"<fuse {tmp_path / 'alt'}>", "<sync>"]
    assert not (tmp_path / "alt").exists(), "the mount point made for the run is removed"


def test_refusals_before_the_appliance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path / "state"))
    with pytest.raises(PhaseStateError, match="no Phase 1 recorded"):
        cz.prepare(("t.img",), cz.CustomizeOptions())
    busy = tmp_path / "alt_inst"
    busy.mkdir()
    (busy / "x").write_text("")
    with pytest.raises(UsageError, match="is not an empty directory"):
        cz.check_mountpoint(str(busy))
    with pytest.raises(UsageError, match="is a mount point already"):
        cz.check_mountpoint("/proc")
    cz.check_mountpoint(str(tmp_path / "absent"))


def test_a_woken_alternate_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imgclone.model import journal as state

    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path))
    path = state.state_path(["t.img"])
    path.write_text('{"targets": [], "layout": {}, "woken": {"mountpoint": "/alt_inst", "pid": 1}}')
    with pytest.raises(PhaseStateError, match="is mounted at /alt_inst .*imgclone alt sleep -d t.img first"):
        state.load_alternate(("t.img",))
