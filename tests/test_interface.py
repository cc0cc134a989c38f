"""The Guest interface and its two implementations: the Appliance and the tests' FakeGuest have every call of it,
with its parameters, so that neither can drift from it; and the fake behaves as the steps' tests rely on."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imgclone.errors import GuestfsError
from imgclone.guest.appliance import Appliance
from imgclone.guest.onhost import HostGuest
from tests.fakes import GUEST_CALLS, GUEST_FACTS, Call, FakeAppliance, FakeAppliances, FakeGuest


def parameters(fn: Callable[..., Any]) -> list[tuple[str, Any, Any, Any]]:
    """Each parameter's name, kind, default and annotation (as written), then the return annotation."""
    sig = inspect.signature(fn)
    params = [(p.name, p.kind, p.default, p.annotation) for p in sig.parameters.values()]
    return [*params, ("return", None, None, sig.return_annotation)]


def public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))}


def test_the_interface_is_the_calls_the_steps_make() -> None:
    assert len(GUEST_CALLS) > 100
    assert {"command", "sh", "appliance_command", "read_file", "mount_ro", "part_add", "vgcreate", "tar_in"} <= set(
        GUEST_CALLS
    )
    assert not {"add_drive", "launch", "close", "shutdown", "set_trace"} & set(GUEST_CALLS), "the Appliance's own"


@pytest.mark.parametrize("name", sorted(GUEST_CALLS))
def test_the_appliance_has_each_call_as_the_interface_types_it(name: str) -> None:
    assert parameters(getattr(Appliance, name)) == parameters(GUEST_CALLS[name])


def test_the_appliance_has_nothing_but_the_interface_and_its_lifecycle() -> None:
    assert public(Appliance) - set(GUEST_CALLS) == {"add_drive", "launch", "close"}


@pytest.mark.parametrize("name", sorted(GUEST_CALLS))
def test_the_host_guest_has_each_call_as_the_interface_types_it(name: str) -> None:
    assert parameters(getattr(HostGuest, name)) == parameters(GUEST_CALLS[name])


def test_the_host_guest_has_nothing_but_the_interface_and_its_lifecycle() -> None:
    assert public(HostGuest) - set(GUEST_CALLS) == {"launch", "close", "make_nodes"}


def test_each_guest_tells_where_its_programs_run() -> None:
    assert GUEST_FACTS == {"native", "sysroot"}
    assert (Appliance.native, Appliance.sysroot, FakeGuest.native) == (False, "/sysroot", False)
    assert HostGuest.native is True and isinstance(HostGuest.sysroot, property)


@pytest.mark.parametrize("name", sorted(GUEST_CALLS))
def test_the_fake_has_each_call_as_the_interface_types_it(name: str) -> None:
    assert parameters(getattr(FakeGuest, name)) == parameters(GUEST_CALLS[name])


def test_the_fake_has_nothing_else_but_its_read_back_helpers() -> None:
    assert public(FakeGuest) - set(GUEST_CALLS) == {"names", "named", "recorded", "text"}


def test_an_appliance_call_before_launch_is_a_guestfs_error() -> None:
    a = Appliance.__new__(Appliance)
    a._g = None
    with pytest.raises(GuestfsError, match="libguestfs call vfs_uuid before the appliance was launched"):
        a.vfs_uuid("/dev/sda1")


def test_an_appliance_call_s_failure_names_it() -> None:
    class Handle:
        def vfs_uuid(self, mountable: str) -> str:
            raise RuntimeError(f"{mountable}: no such device")

    a = Appliance.__new__(Appliance)
    a._g, a._thread = Handle(), type("Quiet", (), {"quiet": True})()
    with pytest.raises(GuestfsError, match="^vfs_uuid: /dev/sdz: no such device$"):
        a.vfs_uuid("/dev/sdz")


def test_the_fake_refuses_what_the_interface_does_not_have() -> None:
    g = FakeGuest()
    with pytest.raises(AttributeError):
        g.aug_init("/", 0)  # a libguestfs call, not one of the interface
    with pytest.raises(TypeError):
        g.vfs_uuid()
    with pytest.raises(TypeError):
        g.mkfs("ext4", "/dev/sda1", 4096)  # blocksize is keyword-only
    assert g.calls == []


def test_the_fake_records_calls_and_answers_from_replies() -> None:
    seen: list[str] = []
    g = FakeGuest({"vgs": ["rootvg"], "vfs_uuid": lambda dev: f"uuid-{dev}", "statvfs": GuestfsError("statvfs: boom"),
                   "pvcreate": seen.append})  # fmt: skip
    assert (g.vgs(), g.vfs_uuid("/dev/sda1"), g.vfs_type("/dev/sda1"), g.lvs()) == (
        ["rootvg"],
        "uuid-/dev/sda1",
        "",
        [],
    )
    with pytest.raises(GuestfsError, match="boom"):
        g.statvfs("/")
    g.pvcreate("/dev/sda2")
    g.mkfs("xfs", "/dev/sda1", label="root", blocksize=None)
    assert seen == ["/dev/sda2"]
    assert g.calls[0] == Call("vgs", (), {})
    assert g.names() == ["vgs", "vfs_uuid", "vfs_type", "lvs", "statvfs", "pvcreate", "mkfs"]
    assert g.named("vfs_uuid") == [("/dev/sda1",)]
    assert g.recorded("mkfs", "pvcreate") == [
        ("pvcreate", "/dev/sda2"),
        ("mkfs", "xfs", "/dev/sda1", ("label", "root")),
    ]


def test_the_fake_keeps_files_links_and_directories(tmp_path: Path) -> None:
    g = FakeGuest(files={"/etc/fstab": "UUID=x / ext4 defaults 0 1\n"}, links={"/etc/mtab": "../proc/mounts"})
    g.write("/etc/hostname", b"clone\n")
    g.mkdir_p("/var/cache/imgclone")
    (tmp_path / "pkg.deb").write_bytes(b"deb")
    g.upload(str(tmp_path / "pkg.deb"), "/var/cache/imgclone/pkg.deb")
    assert g.read_file("/etc/hostname") == b"clone\n" and g.text("/etc/fstab").startswith("UUID=x")
    assert g.ls("/etc") == ["fstab", "hostname", "mtab"]
    assert g.find("/var") == ["/cache", "/cache/imgclone", "/cache/imgclone/pkg.deb"]
    assert g.glob_expand("/var/*") == ["/var/cache/"] and g.glob_expand("/etc/*name") == ["/etc/hostname"]
    assert g.is_dir("/var/cache") and g.exists("/etc") and not g.is_file("/etc") and g.is_symlink("/etc/mtab")
    assert g.readlink("/etc/mtab") == "../proc/mounts"
    g.ln_sf("/usr/share/zoneinfo/UTC", "/etc/localtime")
    g.chmod(0o600, "/etc/hostname")
    assert g.links["/etc/localtime"] == "/usr/share/zoneinfo/UTC" and g.modes == {"/etc/hostname": 0o600}
    g.rm_rf("/var/cache")
    g.rm_f("/etc/fstab")
    assert not g.exists("/var/cache/imgclone/pkg.deb") and not g.exists("/etc/fstab") and g.is_dir("/var")
    with pytest.raises(GuestfsError, match="read_file: /etc/fstab: No such file"):
        g.read_file("/etc/fstab")
    g.download("/etc/hostname", str(tmp_path / "hostname"))
    assert (tmp_path / "hostname").read_bytes() == b"clone\n"


def test_a_reply_to_a_file_call_runs_before_the_change_and_may_refuse_it() -> None:
    g = FakeGuest({"write": GuestfsError("write: No space left on device"), "is_file": True})
    with pytest.raises(GuestfsError, match="No space"):
        g.write("/etc/hostname", b"x")
    assert "/etc/hostname" not in g.files and g.is_file("/etc/hostname"), "the reply answers in place of the files"


def test_the_fake_notes_the_mounts() -> None:
    g = FakeGuest()
    g.mount_ro("/dev/vg/root", "/")
    g.mount("/dev/sda1", "/boot")
    assert g.mounted == {"/": "/dev/vg/root", "/boot": "/dev/sda1"} and g.mounts() == ["/dev/vg/root", "/dev/sda1"]
    g.umount_all()
    assert g.mounted == {}


def test_the_fake_appliance_records_its_lifecycle() -> None:
    appliances = FakeAppliances(replies={"list_devices": ["/dev/sda"]})
    a = appliances(trace=True)
    a.add_drive("/img/a.qcow2", readonly=False, format="qcow2", label="targeta")
    with pytest.raises(TypeError):
        a.add_drive("/img/b.qcow2")  # readonly is required, as by the Appliance
    with a as g:
        assert g.list_devices() == ["/dev/sda"] and a.launched and not a.closed
    assert a.closed and appliances.made == [a] and isinstance(a, FakeAppliance) and a.traced
    assert a.drives == [("/img/a.qcow2", {"readonly": False, "format": "qcow2", "label": "targeta"})]
    assert a.names() == ["add_drive", "launch", "list_devices", "close"]
