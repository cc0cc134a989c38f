"""imgclone alt (alt_rootvg_op): query, wake, sleep, cleanup; refusals, journal updates, the AIX spellings.

Unit tests use journals written here, FakeRunner for guestmount/guestunmount/LVM and a small fake appliance for
cleanup --wipe. The integration tests make a real alternate (restore -P1), wake it, write through the FUSE mount,
put it to sleep, find the file in the image, wipe it and restore onto it again; and remove an old_ VG from loop
devices with the host's LVM.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from imgclone.alt import alternates, host_vg, wake
from imgclone.alt import cleanup as alt_cleanup
from imgclone.cli.aix import translate
from imgclone.errors import CommandError, GuestfsError, ImgcloneError, PhaseStateError, UsageError
from imgclone.fs.mounttab import unescape
from imgclone.guest.appliance import Appliance
from imgclone.host.run import Argv, Result
from imgclone.model import journal as state
from tests.conftest import ROOT, Captured
from tests.fakes import FakeAppliance, FakeRunner, fail

Run = Callable[..., subprocess.CompletedProcess[bytes]]
DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("IMGCLONE_ACCEL", "tcg")
    return tmp_path / "state"


def alt_layout(disks: int = 1) -> dict[str, Any]:
    """The BIOS + LVM test layout as Phase 1 records it (altinst_rootvg, alt_<lv>); disks=2 adds a PV disk."""
    d = json.loads((DATA / "layout-bios-lvm.json").read_text())
    d["vgs"][0]["name"] = "altinst_rootvg"
    for lv in d["lvs"]:
        lv["name"] = "alt_" + lv["name"]
    if disks == 2:
        d["disks"].append(dict(d["disks"][0], id="disk-sdb", path="/dev/sdb", table="none"))
        d["vgs"][0]["pvs"].append("disk-sdb")
    return d


def journal(tmp_path: Path, name: str = "clone", disks: int = 1, phases: tuple[str, ...] = ("1",),
            create: bool = True) -> list[str]:  # fmt: skip
    """Write the journal of an alternate on new target files; returns the target paths."""
    targets = [str(tmp_path / f"{name}{i}.qcow2") for i in range(disks)]
    if create:
        for t in targets:
            Path(t).write_bytes(b"")
    doc = {
        "version": 1,
        "targets": [
            {"path": t, "kind": "image", "format": "qcow2" if i == 0 else "raw", "size": 8 << 30}
            for i, t in enumerate(targets)
        ],  # fmt: skip
        "layout": alt_layout(disks),
        "uuids": {"fs-root": "new-root", "fs-boot": "new-boot", "fs-var": "new-var"},
        "archive": "/backup/host.mksysb",
        "archive_created": "2025-01-02T03:04:05Z",
        "phases": {p: {"completed": f"2025-01-0{p}T00:00:00Z"} for p in phases},
    }
    path = state.state_path(targets)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return targets


def doc_of(targets: list[str]) -> dict[str, Any]:
    """The journal of these targets as its JSON document."""
    doc: dict[str, Any] = json.loads(state.state_path(targets).read_text())
    return doc


# -- query ---------------------------------------------------------------------------------------------------------


def test_query_names_now_missing_targets_and_phases(tmp_path: Path) -> None:
    early = journal(tmp_path, "early")
    done = journal(tmp_path, "done", phases=("1", "2", "3"))
    gone = journal(tmp_path, "gone", create=False)
    by_path = {a.targets[0].path: a.to_dict() for a in alternates.all_alternates()}
    assert by_path[early[0]]["vgs"] == [{"name": "altinst_rootvg", "lvs": ["alt_root", "alt_var", "alt_swap"]}]
    assert by_path[done[0]]["vgs"] == [{"name": "rootvg", "lvs": ["root", "var", "swap"]}]
    assert by_path[done[0]]["final_names"] is True and list(by_path[done[0]]["phases"]) == ["1", "2", "3"]
    assert by_path[gone[0]]["targets"][0]["exists"] is False
    assert by_path[early[0]]["filesystems"][:2] == [
        {"mountpoint": "/", "type": "ext4", "device": "altinst_rootvg/alt_root"},
        {"mountpoint": "/boot", "type": "ext4", "device": f"partition 1 of {early[0]}"},
    ]
    assert by_path[early[0]]["woken"] is None and by_path[early[0]]["archive"] == "/backup/host.mksysb"


def test_query_cli_json_text_and_unknown_target(imgclone: Run, tmp_path: Path) -> None:
    targets = journal(tmp_path)
    r = imgclone("alt", "query", "--json")
    assert r.returncode == 0, r.stderr.decode()
    data = json.loads(r.stdout)
    assert [a["targets"][0]["path"] for a in data["alternates"]] == targets
    r = imgclone("alt", "query", "-d", targets[0])
    out = r.stdout.decode()
    assert r.returncode == 0 and "volume group altinst_rootvg: alt_root, alt_var, alt_swap" in out
    assert "phases       1 at 2025-01-01T00:00:00Z; not run: 2, 3" in out and "woken        no" in out
    r = imgclone("alt", "query", "-d", str(tmp_path / "other.qcow2"))
    err = r.stderr.decode()
    assert r.returncode == 1 and "no alternate recorded for these targets" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_query_without_journals(imgclone: Run, state_dir: Path) -> None:
    r = imgclone("alt", "query")
    assert r.returncode == 0 and r.stdout.decode() == f"no alternates recorded in {state_dir}\n"


# -- wake ----------------------------------------------------------------------------------------------------------


def test_drive_names() -> None:
    assert [wake.drive_name(i) for i in (0, 1, 25, 26, 27, 701, 702)] == [
        "/dev/sda", "/dev/sdb", "/dev/sdz", "/dev/sdaa", "/dev/sdab", "/dev/sdzz", "/dev/sdaaa"]  # fmt: skip


def test_guestmount_argv_follows_the_names_and_drive_order(tmp_path: Path) -> None:
    targets = journal(tmp_path, disks=2)
    argv = wake.guestmount_argv(alternates.find(targets), "/alt_inst", "/run/x.pid")
    assert argv == ["guestmount", "--rw", "--format=qcow2", "-a", targets[0], "--format=raw", "-a", targets[1],
                    "-m", "/dev/altinst_rootvg/alt_root:/", "-m", "/dev/sda1:/boot",
                    "-m", "/dev/altinst_rootvg/alt_var:/var", "--pid-file", "/run/x.pid", "/alt_inst"]  # fmt: skip
    final = journal(tmp_path, "final", phases=("1", "3"))
    argv = wake.guestmount_argv(alternates.find(final), "/alt_inst", "/run/x.pid")
    assert "/dev/rootvg/root:/" in argv and "/dev/rootvg/var:/var" in argv


def test_guestmount_argv_mounts_each_btrfs_subvolume_with_its_option(tmp_path: Path) -> None:
    """A clone with btrfs subvolumes: / is @ (compressed as on the source), /home is @home, both on sda2."""
    from tests.layouts import stacks

    layout = stacks()
    layout = replace(layout, lvs=(), vgs=(), filesystems=layout.filesystems[:2], partitions=layout.partitions[:2])
    alt = replace(alternates.find(journal(tmp_path)), layout=layout)
    argv = wake.guestmount_argv(alt, "/alt_inst", "/run/x.pid")
    mounts = [argv[i + 1] for i, a in enumerate(argv) if a == "-m"]
    assert mounts == ["/dev/sda2:/:subvol=@,compress=zstd", "/dev/sda1:/boot", "/dev/sda2:/home:subvol=@home"]


@pytest.fixture
def fake_guestmount() -> Iterator[subprocess.Popen[bytes]]:
    """A process whose argv[0] is guestmount, standing in for the FUSE daemon."""
    p = subprocess.Popen(["bash", "-c", "exec -a guestmount sleep 120"])
    try:
        # until bash has exec'd, the pid is a bash: a test that asks at once under load would see no guestmount
        deadline = time.monotonic() + 10
        while not alternates.guestmount_alive(p.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        yield p
    finally:
        p.kill()
        p.wait()


def guestmount_reply(pid: int) -> Callable[[list[str], bytes | None], Result]:
    def reply(argv: list[str], _input: bytes | None) -> Result:
        Path(argv[argv.index("--pid-file") + 1]).write_text(f"{pid}\n")
        return Result(argv, 0, b"", "")

    return reply


class EnvRunner(FakeRunner):
    """FakeRunner that also keeps the environment each command was given."""

    envs: list[Mapping[str, str] | None]

    def run(self, argv: Argv, **kwargs: Any) -> Result:
        self.envs = getattr(self, "envs", []) + [kwargs.get("env")]
        return super().run(argv, **kwargs)


def test_wake_records_then_refuses_wake_and_cleanup(tmp_path: Path, fake_guestmount: subprocess.Popen[bytes]) -> None:
    targets = journal(tmp_path)
    mp = tmp_path / "alt_inst"
    runner = EnvRunner({("guestmount",): guestmount_reply(fake_guestmount.pid)})
    woken = wake.wake(targets, str(mp), runner=runner)
    assert woken.pid == fake_guestmount.pid and woken.made_mountpoint and mp.is_dir()
    assert runner.envs == [{"LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}], "TCG must reach guestmount's appliance"
    record = doc_of(targets)["woken"]
    assert record["mountpoint"] == str(mp) and record["pid"] == fake_guestmount.pid
    assert alternates.find(targets).to_dict()["woken"]["alive"] is True
    with pytest.raises(PhaseStateError, match=r"wake: .* is woken at .*alt_inst \(guestmount pid \d+\)"):
        wake.wake(targets, str(tmp_path / "elsewhere"), runner=runner)
    with pytest.raises(PhaseStateError, match="cleanup: .* is woken at"):
        alt_cleanup.cleanup(targets)
    assert len(runner.calls) == 1 and not (tmp_path / "elsewhere").exists()
    fake_guestmount.kill()
    fake_guestmount.wait()
    with pytest.raises(PhaseStateError, match="stale wake record"):
        wake.wake(targets, str(tmp_path / "elsewhere"), runner=runner)


@pytest.mark.parametrize("kind", ["mounted", "file", "full"])
def test_wake_refuses_a_bad_mountpoint_and_writes_nothing(tmp_path: Path, kind: str) -> None:
    targets = journal(tmp_path)
    before = doc_of(targets)
    mp = {"mounted": Path("/proc"), "file": tmp_path / "f", "full": tmp_path / "d"}[kind]
    if kind == "file":
        mp.write_text("x")
    if kind == "full":
        mp.mkdir()
        (mp / "x").write_text("x")
    message = {"mounted": "is a mount point already", "file": "not a directory", "full": "directory is not empty"}
    runner = FakeRunner()
    with pytest.raises(UsageError, match=message[kind]):
        wake.wake(targets, str(mp), runner=runner)
    assert runner.calls == [] and doc_of(targets) == before


def test_wake_refuses_missing_targets(tmp_path: Path) -> None:
    targets = journal(tmp_path, create=False)
    with pytest.raises(PhaseStateError, match="no longer exist"):
        wake.wake(targets, str(tmp_path / "mp"), runner=FakeRunner())
    assert not (tmp_path / "mp").exists()


def test_failed_guestmount_leaves_no_mountpoint_and_no_record(tmp_path: Path) -> None:
    targets = journal(tmp_path)
    runner = FakeRunner({("guestmount",): fail(1, "libguestfs: error: could not create appliance\n")})
    with pytest.raises(CommandError, match="guestmount failed with exit code 1: libguestfs: error"):
        wake.wake(targets, str(tmp_path / "mp"), runner=runner)
    assert not (tmp_path / "mp").exists() and "woken" not in doc_of(targets)


def woken_journal(tmp_path: Path, pid: int, made: bool = True) -> tuple[list[str], Path]:
    targets = journal(tmp_path)
    mp = tmp_path / "alt_inst"
    mp.mkdir()
    state.set_woken(targets, state.Woken(str(mp), pid, "now", made))
    return targets, mp


def test_sleep_unmounts_waits_for_the_daemon_and_clears(
    tmp_path: Path, fake_guestmount: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    targets, mp = woken_journal(tmp_path, fake_guestmount.pid)
    mounts = {str(mp)}
    monkeypatch.setattr(alternates, "mounted", lambda path: path in mounts)

    def unmount(argv: list[str], _input: bytes | None) -> Result:
        mounts.discard(argv[-1])
        fake_guestmount.kill()  # the daemon exits once its images are flushed
        return Result(argv, 0, b"", "")

    runner = FakeRunner({("guestunmount",): unmount})
    said = wake.sleep(targets, runner=runner)
    assert runner.calls == [["guestunmount", str(mp)]]
    assert said.startswith(f"unmounted {mp}") and "woken" not in doc_of(targets) and not mp.exists()
    with pytest.raises(PhaseStateError, match="is not woken"):
        wake.sleep(targets, runner=runner)


def test_sleep_when_busy_keeps_the_record(
    tmp_path: Path, fake_guestmount: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    targets, mp = woken_journal(tmp_path, fake_guestmount.pid)
    monkeypatch.setattr(alternates, "mounted", lambda path: True)
    busy = f"guestunmount: cannot unmount {mp}: Device or resource busy\n/tmp: root 1 bash\n"
    with pytest.raises(ImgcloneError, match=r"Device or resource busy \(close shells and files under it"):
        wake.sleep(targets, runner=FakeRunner({("guestunmount",): fail(1, busy)}))
    assert doc_of(targets)["woken"]["pid"] == fake_guestmount.pid


def test_sleep_clears_a_stale_record_and_finds_the_only_woken(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no alternate is woken"):
        wake.sleep(None, runner=FakeRunner())
    targets, mp = woken_journal(tmp_path, pid=2**22 + 7, made=False)  # no such process
    journal(tmp_path, "asleep")
    runner = FakeRunner()
    assert wake.sleep(None, runner=runner).startswith(f"{mp} was no longer mounted")
    assert runner.calls == [] and "woken" not in doc_of(targets) and mp.is_dir(), "a directory we did not make stays"


def test_a_dead_daemon_still_mounted_is_unmounted_and_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    targets, mp = woken_journal(tmp_path, pid=2**22 + 7)  # killed: its FUSE mount is left behind
    mounts = {str(mp)}
    monkeypatch.setattr(alternates, "mounted", lambda path: path in mounts)
    with pytest.raises(PhaseStateError, match=r"is woken at .*, but its guestmount \(pid \d+\) is gone"):
        wake.wake(targets, str(tmp_path / "elsewhere"), runner=FakeRunner())
    runner = FakeRunner({("guestunmount",): lambda argv, _in: mounts.clear() or Result(argv, 0, b"", "")})
    said = wake.sleep(targets, runner=runner)
    assert runner.calls == [["guestunmount", str(mp)]] and "had died: what it had not written" in said
    assert "woken" not in doc_of(targets)


# -- cleanup -------------------------------------------------------------------------------------------------------


def test_cleanup_forgets_the_alternate(tmp_path: Path) -> None:
    targets = journal(tmp_path)
    actions = alt_cleanup.cleanup(targets)
    assert "the targets still hold altinst_rootvg" in actions[0] and actions[-1].startswith("forgot")
    assert state.load(targets) is None and Path(targets[0]).exists()
    with pytest.raises(PhaseStateError, match="no alternate recorded"):
        alt_cleanup.cleanup(targets)


WIPES = ("vg_activate", "wipefs", "vgremove", "pvremove", "blockdev_rereadpt", "close")  # what changes the disks


def wipe_guest(vgs: tuple[str, ...] = ("altinst_rootvg",), uuids: dict[str, str] | None = None) -> FakeAppliance:
    """Just enough of an appliance holding one alternate: BIOS layout, sda1 /boot, sda2 the PV; vgremove, pvremove
    and wipefs take away what they remove."""
    names, table = list(vgs), ["msdos"]
    lvs = [f"/dev/{vg}/{lv}" for vg in vgs for lv in ("alt_root", "alt_var", "alt_swap")]
    types = {"/dev/sda1": "ext4", "/dev/sda2": "LVM2_member"} | {lv: "ext4" for lv in lvs}

    def vfs_type(dev: str) -> str:
        if dev not in types:
            raise GuestfsError(f"vfs_type: {dev}: no such device")
        return types[dev]

    def part_get_parttype(dev: str) -> str:
        if not table:
            raise GuestfsError("part_get_parttype: unrecognised disk label")
        return table[0]

    def vgremove(name: str) -> None:
        names.remove(name)
        for lv in [d for d in types if d.startswith(f"/dev/{name}/")]:
            del types[lv]

    def wipefs(dev: str) -> None:
        types.pop(dev, None)
        if dev == "/dev/sda":
            table.clear()

    return FakeAppliance(replies={
        "list_devices": ["/dev/sda"],
        "list_partitions": lambda: ["/dev/sda1", "/dev/sda2"] if table else [],
        "vgs": lambda: list(names),
        "lvs": lambda: [d for d in types if d.count("/") == 3],
        "list_filesystems": lambda: {d: t for d, t in types.items() if t != "LVM2_member"},
        "vfs_type": vfs_type,
        "vfs_uuid": lambda dev: (uuids or {}).get(dev, "other"),
        "part_get_parttype": part_get_parttype,
        "vgremove": vgremove,
        "pvremove": types.pop,
        "wipefs": wipefs,
    })  # fmt: skip


def test_cleanup_wipe_blanks_only_the_recorded_targets(tmp_path: Path) -> None:
    targets = journal(tmp_path)
    g = wipe_guest()
    actions = alt_cleanup.cleanup(targets, wipe=True, make_guest=lambda: g)
    assert [(path, opts["readonly"], opts.get("format")) for path, opts in g.drives] == [(targets[0], False, "qcow2")]
    assert g.recorded(*WIPES) == [
        ("vg_activate", True, ["altinst_rootvg"]),
        ("wipefs", "/dev/altinst_rootvg/alt_root"),
        ("wipefs", "/dev/altinst_rootvg/alt_var"),
        ("wipefs", "/dev/altinst_rootvg/alt_swap"),
        ("vgremove", "altinst_rootvg"),
        ("pvremove", "/dev/sda2"),
        ("wipefs", "/dev/sda1"),
        ("wipefs", "/dev/sda2"),
        ("wipefs", "/dev/sda"),
        ("blockdev_rereadpt", "/dev/sda"),
        ("close",),
    ]
    assert actions[0] == "removed volume group altinst_rootvg and its logical volumes"
    assert f"removed physical volume partition 2 of {targets[0]}" in actions
    assert state.load(targets) is None


def test_cleanup_wipe_after_phase3_removes_the_final_names(tmp_path: Path) -> None:
    targets = journal(tmp_path, phases=("1", "2", "3"))
    g = wipe_guest(vgs=("rootvg",))
    alt_cleanup.cleanup(targets, wipe=True, make_guest=lambda: g)
    assert ("vgremove", "rootvg") in g.recorded(*WIPES)


def test_cleanup_wipe_refuses_a_disk_that_no_longer_holds_the_alternate(tmp_path: Path) -> None:
    targets = journal(tmp_path)
    g = wipe_guest(vgs=("datavg",))  # reused for something else since: other VG, other UUIDs
    with pytest.raises(ImgcloneError, match="no longer holds this alternate"):
        alt_cleanup.cleanup(targets, wipe=True, make_guest=lambda: g)
    assert [c for c in g.recorded(*WIPES) if c[0] != "close"] == [] and state.load(targets) is not None
    g = wipe_guest(vgs=(), uuids={"/dev/sda1": "NEW-BOOT"})  # VG gone, /boot still ours: wipe what is left
    alt_cleanup.cleanup(targets, wipe=True, make_guest=lambda: g)
    assert ("wipefs", "/dev/sda1") in g.recorded(*WIPES) and state.load(targets) is None


def test_cleanup_wipe_refuses_missing_targets(tmp_path: Path) -> None:
    targets = journal(tmp_path, create=False)
    with pytest.raises(PhaseStateError, match="no longer exist"):
        alt_cleanup.cleanup(targets, wipe=True, make_guest=wipe_guest)
    assert state.load(targets) is not None


# -- old_<vg> on the host ------------------------------------------------------------------------------------------


def lvm_runner(lv_attr: str | None = "-wi-------") -> FakeRunner:
    pvs = {"report": [{"pv": [{"pv_name": "/dev/sdb2", "vg_name": "old_rootvg"},
                              {"pv_name": "/dev/sda3", "vg_name": "rootvg"},
                              {"pv_name": "/dev/sdc", "vg_name": "old_rootvg"}]}]}  # fmt: skip
    lvs = [{"lv_name": "root", "vg_name": "old_rootvg", "lv_attr": lv_attr, "lv_path": "/dev/old_rootvg/root",
            "lv_dm_path": "/dev/mapper/old_rootvg-root"}] if lv_attr else []  # fmt: skip
    return FakeRunner({("pvs",): json.dumps(pvs), ("lvs",): json.dumps({"report": [{"lv": lvs}]}),
                       ("vgremove",): "", ("pvremove",): "", ("wipefs",): ""})  # fmt: skip


def test_old_vg_names_its_pvs_and_waits_for_yes() -> None:
    runner = lvm_runner()
    said = host_vg.cleanup_old_vg("old_rootvg", yes=False, runner=runner)
    assert said == ["would remove volume group old_rootvg (1 logical volume(s)) and the LVM and other signatures of "
                    "/dev/sdb2, /dev/sdc; nothing done (--yes-wipe does it)"]  # fmt: skip
    assert [c[0] for c in runner.calls] == ["pvs", "lvs"]
    host_vg.cleanup_old_vg("old_rootvg", yes=True, runner=runner)
    assert runner.calls[4:] == [["vgremove", "--yes", "--force", "old_rootvg"],
                                ["pvremove", "--yes", "/dev/sdb2", "/dev/sdc"],
                                ["wipefs", "--all", "/dev/sdb2", "/dev/sdc"]]  # fmt: skip


@pytest.mark.parametrize(("name", "attr", "error", "message"), [
    ("rootvg", "-wi-------", UsageError, "only a volume group named old_<vg>"),
    ("old_", "-wi-------", UsageError, "only a volume group named old_<vg>"),
    ("old_datavg", "-wi-------", ImgcloneError, "no such volume group on this host"),
    ("old_rootvg", "-wi-a-----", ImgcloneError, r"logical volume root is active \(vgchange -an old_rootvg first"),
    ("old_rootvg", "-wi-ao----", ImgcloneError, "logical volume root is active"),
])  # fmt: skip
def test_old_vg_refusals(name: str, attr: str, error: type[Exception], message: str) -> None:
    runner = lvm_runner(attr)
    with pytest.raises(error, match=message):
        host_vg.cleanup_old_vg(name, yes=True, runner=runner)
    assert not any(c[0] in ("vgremove", "pvremove", "wipefs") for c in runner.calls)


def test_old_vg_mounted_lv_or_pv_is_refused() -> None:
    vg = host_vg.find_old_vg("old_rootvg", lvm_runner())
    dm = os.path.realpath("/dev/mapper/old_rootvg-root")
    with pytest.raises(ImgcloneError, match="logical volume root is mounted at /mnt/old"):
        host_vg.check_old_vg_unused(vg, {dm: "/mnt/old"})
    with pytest.raises(ImgcloneError, match="/dev/sdc is mounted at /srv"):
        host_vg.check_old_vg_unused(vg, {os.path.realpath("/dev/sdc"): "/srv"})
    host_vg.check_old_vg_unused(vg, {"/dev/sda3": "/"})


def test_mountinfo_of_this_host() -> None:
    assert alternates.mounted("/proc") and not alternates.mounted("/proc/self")
    assert all(where.startswith("/") for where in host_vg.mount_sources().values())
    assert unescape(r"/mnt/with\040space\134x") == "/mnt/with space\\x"


# -- command line and alt_rootvg_op ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("aix", "imgclone"), [
    (["-q", "-d", "c.qcow2"], ["alt", "query", "-d", "c.qcow2"]),
    (["-q", "--json"], ["alt", "query", "--json"]),
    (["-W", "-d", "a.img", "-d", "b.img"], ["alt", "wake", "-d", "a.img b.img"]),
    (["-W", "-d", "a.img", "--mountpoint", "/mnt/x", "-D"], ["alt", "wake", "-d", "a.img", "--mountpoint", "/mnt/x",
                                                            "-D"]),
    (["-S", "-d", "c.qcow2"], ["alt", "sleep", "-d", "c.qcow2"]),
    (["-S"], ["alt", "sleep"]),
    (["-X", "-d", "c.qcow2"], ["alt", "cleanup", "-d", "c.qcow2"]),
    (["-X", "altinst_rootvg", "-d", "c.qcow2", "--wipe"], ["alt", "cleanup", "-d", "c.qcow2", "--wipe"]),
    (["-X", "old_rootvg"], ["alt", "cleanup", "--old-vg", "old_rootvg"]),
    (["-X", "old_rootvg", "--yes-wipe"], ["alt", "cleanup", "--old-vg", "old_rootvg", "--yes-wipe"]),
])  # fmt: skip
def test_alt_rootvg_op_spellings(aix: list[str], imgclone: list[str]) -> None:
    assert translate(aix) == imgclone


@pytest.mark.parametrize(("aix", "message"), [
    ([], "give one of -q (query), -W (wake), -S (sleep), -X (clean up)"),
    (["-W"], "-W needs -d TARGETS"),
    (["-q", "-W", "-d", "x"], "not allowed with argument"),
    (["-X"], "-X altinst_rootvg needs -d TARGETS"),
    (["-X", "datavg", "-d", "x"], "-X datavg: give altinst_<vg> (with -d TARGETS) or old_<vg>"),
    (["-X", "old_rootvg", "-d", "x"], "-X old_rootvg removes this host's volume group: no -d"),
    (["-X", "-d", "x", "--yes-wipe"], "--yes-wipe goes with -X old_<vg>"),
    (["-q", "--wipe"], "--wipe does not go with -q"),
    (["-S", "--mountpoint", "/x"], "--mountpoint does not go with -S"),
    (["-C", "-d", "x"], "not supported here: -C"),
])  # fmt: skip
def test_alt_rootvg_op_usage_errors(aix: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        translate(aix)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("error:") == 1
    assert len(err.splitlines()) == 1, err  # one line: the usage block is in --help


def alt_rootvg_op(*args: str) -> subprocess.CompletedProcess[bytes]:
    code = "import sys; from imgclone.cli.main import alt_rootvg_op; alt_rootvg_op(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, cwd=ROOT, check=False)


def test_alt_rootvg_op_runs_imgclone(tmp_path: Path) -> None:
    targets = journal(tmp_path)
    r = alt_rootvg_op("-q", "-d", targets[0], "--json")
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout)["alternates"][0]["vgs"][0]["name"] == "altinst_rootvg"
    r = alt_rootvg_op("-S", "-d", targets[0])
    assert r.returncode == 1 and b"imgclone: error: sleep: the alternate" in r.stderr and b"not woken" in r.stderr


@pytest.mark.parametrize(("args", "code", "message"), [
    (["alt", "cleanup"], 2, "give -d TARGETS (an alternate) or --old-vg old_<vg>"),
    (["alt", "cleanup", "-d", "{tmp}/x.img", "--yes-wipe"], 2, "--yes-wipe goes with --old-vg"),
    (["alt", "cleanup", "--old-vg", "old_rootvg", "-d", "{tmp}/x.img"], 2, "--old-vg works on this host's"),
    (["alt", "cleanup", "--old-vg", "rootvg"], 2, "only a volume group named old_<vg>"),
    (["alt", "wake"], 2, "required: -d"),
    (["alt", "wake", "-d", "{tmp}/x.img"], 1, "no alternate recorded for these targets"),
    (["alt", "sleep"], 2, "no alternate is woken"),
    (["alt", "frobnicate"], 2, "invalid choice"),
])  # fmt: skip
def test_bad_alt_input_writes_nothing(imgclone: Run, tmp_path: Path, args: list[str], code: int, message: str) -> None:
    before = sorted(tmp_path.rglob("*"))
    r = imgclone(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    err = r.stderr.decode()
    assert r.returncode == code, err
    assert message in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1, err
    assert sorted(tmp_path.rglob("*")) == before


def test_help_teaches(imgclone: Run) -> None:
    for sub in ("query", "wake", "sleep", "cleanup"):
        r = imgclone("alt", sub, "--help")
        out = r.stdout.decode()
        assert r.returncode == 0 and "examples:" in out and "alt_rootvg_op -q" in out, sub
    assert "-S is sleep" in alt_rootvg_op("--help").stdout.decode()


# -- integration ---------------------------------------------------------------------------------------------------


def read_from_image(image: Path, *paths: str) -> list[bytes]:
    """Files of the alternate (Phase 1 names), read through a read-only appliance."""
    g = Appliance()
    g.add_drive(str(image), readonly=True, format="qcow2")
    with g:
        g.mount_ro("/dev/altinst_rootvg/alt_root", "/")
        g.mount_ro("/dev/altinst_rootvg/alt_var", "/var")
        g.mount_ro("/dev/sda2", "/boot")
        g.mount_ro("/dev/sda1", "/boot/efi")
        return [bytes(g.read_file(p)) for p in paths]


@pytest.mark.integration
def test_query_wake_write_sleep_wipe_and_restore_again(
    gpt_lvm_capture: Captured, tmp_path: Path, imgclone: Run, state_dir: Path
) -> None:
    _, archive, _, _ = gpt_lvm_capture
    clone = tmp_path / "clone.qcow2"
    r = imgclone("restore", "-a", str(archive), "-d", str(clone), "-P1", "--json")
    assert r.returncode == 0, r.stderr.decode()

    r = imgclone("alt", "query", "--json")
    assert r.returncode == 0, r.stderr.decode()
    (alt,) = json.loads(r.stdout)["alternates"]
    assert alt["targets"] == [dict(alt["targets"][0], path=str(clone), exists=True)]
    assert alt["vgs"] == [{"name": "altinst_rootvg", "lvs": ["alt_root", "alt_var", "alt_swap"]}]
    assert list(alt["phases"]) == ["1"] and alt["archive"] == str(archive) and alt["woken"] is None

    mp = tmp_path / "alt_inst"
    r = imgclone("alt", "wake", "-d", str(clone), "--mountpoint", str(mp))
    assert r.returncode == 0, r.stderr.decode()
    try:
        assert sorted(os.listdir(mp / "boot")) >= ["efi"] and (mp / "etc" / "os-release").exists()
        (mp / "etc" / "alt-note").write_text("written while woken\n")
        (mp / "var" / "alt-note").write_text("on /var\n")
        (mp / "boot" / "efi" / "ALTNOTE.TXT").write_text("on the ESP\n")
        r = imgclone("alt", "wake", "-d", str(clone), "--mountpoint", str(tmp_path / "again"))
        assert r.returncode == 1 and b"is woken at" in r.stderr
        r = imgclone("alt", "query", "-d", str(clone), "--json")
        assert json.loads(r.stdout)["alternates"][0]["woken"]["alive"] is True
    finally:
        r = imgclone("alt", "sleep", "-d", str(clone))
    assert r.returncode == 0, r.stderr.decode()
    assert b"images flushed" in r.stdout and not mp.exists()
    assert read_from_image(clone, "/etc/alt-note", "/var/alt-note", "/boot/efi/ALTNOTE.TXT") == [
        b"written while woken\n", b"on /var\n", b"on the ESP\n"]  # fmt: skip

    r = imgclone("restore", "-a", str(archive), "-d", str(clone), "-P1")
    assert r.returncode == 2 and b"already exists on a target" in r.stderr, "a used target must be refused"
    r = imgclone("alt", "cleanup", "-d", str(clone), "--wipe")
    assert r.returncode == 0, r.stderr.decode()
    assert b"removed volume group altinst_rootvg" in r.stdout and not list(state_dir.glob("*.json"))
    r = imgclone("restore", "-a", str(archive), "-d", str(clone), "-P1", "--json")
    assert r.returncode == 0, r.stderr.decode()
    assert len(list(state_dir.glob("*.json"))) == 1


@pytest.fixture
def loop_pvs(tmp_path: Path) -> Iterator[tuple[list[str], str]]:
    """Two loop devices made PVs of a new VG old_<random> (a VG without LVs needs no device-mapper)."""
    vg = "old_imgtest" + uuid.uuid4().hex[:8]
    loops = []
    try:
        for i in range(2):
            backing = tmp_path / f"pv{i}.raw"
            with open(backing, "wb") as f:
                f.truncate(64 << 20)
            dev = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                                 check=True).stdout.strip()  # fmt: skip
            loops.append(dev)
        subprocess.run(["vgcreate", "-q", vg, *loops], capture_output=True, check=True)
        yield loops, vg
    finally:
        subprocess.run(["vgremove", "-q", "-f", vg], capture_output=True, check=False)
        for dev in loops:
            subprocess.run(["wipefs", "-q", "-a", dev], capture_output=True, check=False)
            subprocess.run(["losetup", "-d", dev], check=False)


def host_vgs() -> list[str]:
    r = subprocess.run(["vgs", "--reportformat", "json", "-o", "vg_name"], capture_output=True, text=True, check=True)
    return [v["vg_name"] for v in json.loads(r.stdout)["report"][0]["vg"]]


@pytest.mark.integration
def test_old_vg_removed_from_loop_devices(loop_pvs: tuple[list[str], str], imgclone: Run) -> None:
    loops, vg = loop_pvs
    r = imgclone("alt", "cleanup", "--old-vg", vg)
    assert r.returncode == 0, r.stderr.decode()
    pvs = ", ".join(sorted(loops))
    assert r.stdout.decode() == (f"would remove volume group {vg} (0 logical volume(s)) and the LVM and other "
                                 f"signatures of {pvs}; nothing done (--yes-wipe does it)\n")  # fmt: skip
    assert vg in host_vgs()
    r = imgclone("alt", "cleanup", "--old-vg", vg.replace("old_", "new_"), "--yes-wipe")
    assert r.returncode == 2 and b"only a volume group named old_<vg>" in r.stderr
    r = alt_rootvg_op("-X", vg, "--yes-wipe")
    assert r.returncode == 0, r.stderr.decode()
    assert vg not in host_vgs()
    for dev in loops:
        probe = subprocess.run(["blkid", "-p", dev], capture_output=True, check=False)
        assert probe.returncode == 2, f"{dev} still has a signature: {probe.stdout!r}"
