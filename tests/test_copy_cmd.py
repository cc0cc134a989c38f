"""copy's two halves (Phase 1 while the capture streams, then Phases 2 and 3) under one lock of the targets."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from imgclone.capture.common import CaptureOptions
from imgclone.cli import copy as copy_cmd
from imgclone.cli.parser import build_parser
from imgclone.cli.rules import copy_request
from imgclone.copy import blocks_rules, command
from imgclone.errors import ImgcloneError, UsageError
from imgclone.fs import space
from imgclone.guest import session
from imgclone.host import locks
from imgclone.model import journal as state
from imgclone.model.layout import Layout
from imgclone.model.manifest import Manifest, Source
from imgclone.phases import command as phases_command
from imgclone.phases.phase import phases_text
from imgclone.phases.request import RestoreRequest
from imgclone.phases.restore import RestoreOptions
from imgclone.plan.planner import make_plan
from imgclone.plan.types import PlanOptions, Resize, Target
from tests.manifests import manifest_of

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMGCLONE_LOCK_DIR", str(tmp_path / "locks"))
    return tmp_path / "locks"


def held(target: str) -> bool:
    """Whether some open file holds the target's lock (tried from a file of our own, as another run would)."""
    path = locks.lock_path(target)
    if not path.exists():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


class Recorder:
    """The fake capture and phases: each records whether the targets were locked when it ran."""

    def __init__(self, targets: Sequence[str]) -> None:
        self.targets = targets
        self.seen: list[tuple[str, bool]] = []
        self.appliances: list[session.Session] = []

    def capture(self, cap: CaptureOptions) -> tuple[Manifest | None, bool]:
        self.seen.append(("capture", all(held(t) for t in self.targets)))
        return Manifest(Layout(), Source("test"), None), False

    def phases(self, req: RestoreRequest, listener: Any, appliance: session.Session, report: bool) -> None:
        self.seen.append((f"-P{phases_text(req.phases)}", all(held(t) for t in req.targets)))
        self.appliances.append(appliance)


def test_the_targets_stay_locked_from_the_capture_to_phase_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disks = [str(tmp_path / "a.qcow2"), str(tmp_path / "b.qcow2")]
    args = build_parser().parse_args(["copy", "-d", " ".join(disks), "--no-progress"])
    req = copy_request(args)
    taken: list[list[str]] = []
    real_hold = locks.hold

    @contextlib.contextmanager
    def counted(paths: Sequence[str]) -> Iterator[None]:
        taken.append(list(paths))
        with real_hold(paths):
            yield

    monkeypatch.setattr(locks, "hold", counted)
    rec = Recorder(disks)
    report = command.copy_phases(req, lambda outcome: None, rec.capture, rec.phases)
    assert report is False
    assert sorted(rec.seen) == [("-P1", True), ("-P23", True), ("capture", True)] and rec.seen[-1][0] == "-P23"
    assert taken == [disks], "taken once for the whole copy: never released between Phase 1 and Phases 2 and 3"
    assert not any(held(t) for t in disks), "released at the end"
    first, second = rec.appliances
    assert first is second, "Phase 1 and Phases 2 and 3 are offered one appliance: one launch, not two"


def test_a_target_locked_by_another_run_stops_the_copy_before_the_capture(tmp_path: Path) -> None:
    disk = str(tmp_path / "a.qcow2")
    args = build_parser().parse_args(["copy", "-d", disk, "--no-progress"])
    rec = Recorder([disk])
    lock = locks.lock_path(disk)
    lock.parent.mkdir(parents=True)
    with open(lock, "a+") as other:
        other.write("pid 1: imgclone restore")
        other.flush()
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(ImgcloneError, match="another imgclone run is working on it"):
            command.copy_phases(copy_request(args), lambda outcome: None, rec.capture, rec.phases)
    assert rec.seen == [], "nothing captured, no phase run"


# -- file counts: a piped archive's first manifest has no streams, so restore plans with the source's inodes
def planning_files(doc: dict[str, Any]) -> dict[str, int]:
    """What restore plans a manifest document's filesystems for (the document without a layout: an empty one)."""
    return manifest_of(doc).planning_files()


def test_planning_files_from_the_streams_else_the_source_inodes() -> None:
    first = {"complete": False, "streams": [], "inodes": {"fs-root": 300_000, "fs-boot": 340}}
    assert planning_files(first) == {"fs-root": 300_000, "fs-boot": 340}
    final = dict(first, complete=True, streams=[{"fs": "fs-root", "files": 250_000}, {"fs": "fs-boot", "files": 330}])
    assert planning_files(final) == {"fs-root": 250_000, "fs-boot": 330}, "a stream's own count wins"
    assert planning_files({"complete": False, "streams": []}) == {}, "older archives: not known"


def test_fit_gives_a_shrunk_ext4_room_for_the_source_inodes() -> None:
    source = Layout.from_json((DATA / "layout-bios-lvm.json").read_text())
    files = planning_files({"streams": [], "inodes": {"fs-root": 300_000}})

    def root_size(opts: PlanOptions) -> int:
        plan = make_plan(source, [Target("/t.img", 0)], opts)
        return next(f.size for f in plan.target.filesystems if f.id == "fs-root")

    blind, informed = root_size(PlanOptions(resize=Resize.FIT)), root_size(PlanOptions(resize=Resize.FIT, files=files))
    assert informed > blind, "without the counts, fit sized / by its bytes only"
    made = space.ext_inodes(informed)
    assert made >= 300_000 > space.ext_inodes(blind), (made, space.ext_inodes(blind))


@pytest.mark.parametrize(("flags", "prescan"), [([], False), (["--convert", "ext4=xfs"], True), (["-T"], True),
                                                (["-i", str(DATA / "layout-bios-lvm.json")], True)])  # fmt: skip
def test_the_capture_prescans_when_the_copy_converts(
    flags: list[str], prescan: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conversion is checked against the content before anything is written: the capture's first manifest must
    then hold the files near a type's limits (prescan.py); a copy that converts nothing does not pay for the find."""
    source = tmp_path / "source.qcow2"
    source.write_bytes(b"")
    seen: list[CaptureOptions] = []
    monkeypatch.setattr(command, "copy_phases", lambda req, listener: seen.append(req.capture) or False)
    args = build_parser().parse_args(["copy", "--source", str(source), "-d", str(tmp_path / "c.qcow2"),
                                      "--no-progress", "--by", "files", *flags])  # fmt: skip
    assert copy_cmd.cmd_copy(args) == 0
    assert [c.prescan for c in seen] == [prescan]


def _blocks_args(tmp_path: Path, *flags: str) -> argparse.Namespace:
    source = tmp_path / "source.qcow2"
    source.write_bytes(b"")
    return build_parser().parse_args(["copy", "--source", str(source), "-d", str(tmp_path / "c.qcow2"),
                                      "--no-progress", *flags])  # fmt: skip


def test_a_copy_that_blocks_can_do_runs_every_phase_in_their_appliance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By blocks, the later phases take over Phase 1's appliance, under the lock it took; no capture runs."""
    seen: list[Any] = []
    p = make_plan(Layout.from_json((DATA / "plan" / "bios-lvm.json").read_text()), [Target("/x", 20 << 30)],
                  PlanOptions())  # fmt: skip

    def phase1(opts: RestoreOptions, cap: CaptureOptions, disk: Any, appliance: session.Session) -> Any:
        seen.append(("1", held(opts.targets[0]), opts.archive_name, appliance))
        return argparse.Namespace(plan=p, uuids={}, timings={}, disks=[], opts=opts)

    def rest(req: RestoreRequest, listener: Any, appliance: session.Session, read_errors: bool = False) -> None:
        seen.append((phases_text(req.phases), held(req.targets[0]), appliance))

    monkeypatch.setattr(command.blocks, "phase1", phase1)
    monkeypatch.setattr(phases_command, "run_held", rest)
    monkeypatch.setattr(command, "copy_phases", lambda *a: pytest.fail("no capture when blocks do"))
    assert copy_cmd.cmd_copy(_blocks_args(tmp_path)) == 0
    (_, locked, name, app), (phases, locked2, app2) = seen
    assert locked and locked2 and name == state.BLOCKS and phases == "23" and app is app2


@pytest.mark.parametrize("flags", [(), ("--by", "blocks")])
def test_a_plan_blocks_cannot_build_goes_by_files_or_is_refused(
    flags: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def phase1(*a: Any) -> Any:
        raise blocks_rules.CopyByFiles("the plan moves or retypes partition 2")

    files: list[CaptureOptions] = []
    monkeypatch.setattr(command.blocks, "phase1", phase1)
    monkeypatch.setattr(command, "copy_phases", lambda req, listener: files.append(req.capture) or False)
    args = _blocks_args(tmp_path, *flags)
    if flags:
        with pytest.raises(UsageError, match=r"--by blocks: the plan moves or retypes partition 2"):
            copy_cmd.cmd_copy(args)
        assert files == []
        return
    assert copy_cmd.cmd_copy(args) == 0
    assert len(files) == 1
    assert "note: Phase 1 copies by files: the plan moves or retypes partition 2" in capsys.readouterr().err


def test_by_blocks_refuses_what_needs_files_before_reading_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(command.blocks, "phase1", lambda *a: pytest.fail("refused before the copy"))
    (tmp_path / "x.list").write_text("^./tmp/\n")
    with pytest.raises(UsageError, match=r"--by blocks: -e excludes files"):
        copy_cmd.cmd_copy(_blocks_args(tmp_path, "--by", "blocks", "-e", str(tmp_path / "x.list")))


@pytest.mark.parametrize(
    ("flags", "says"),
    [((), "Phase 1 would copy by blocks"),
     (("--by", "files"), "Phase 1 would copy by files (--by files)"),
     (("--convert", "xfs=ext4"), "Phase 1 would copy by files (a conversion (-T, --convert) rebuilds the filesystems)"),
     (("--size", "7.6G"), "Phase 1 would copy by files (--size is smaller than the source disk)")],
)  # fmt: skip
def test_the_dry_run_says_how_phase_1_would_copy(
    flags: tuple[str, ...], says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """By blocks, the plan shown is the one blocks build: the image is the source disk's size (8 GiB here), not the
    smallest that holds the plan, and the PV partition keeps its size."""
    source = Layout.from_json((DATA / "plan" / "bios-lvm.json").read_text())
    monkeypatch.setattr(command, "probe_source", lambda cap: (source, {}, {}))
    args = _blocks_args(tmp_path, "--dry-run", "--json", *flags)
    assert copy_cmd.cmd_copy(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["by"] == ("blocks" if not flags else "files")
    args = _blocks_args(tmp_path, "--dry-run", *flags)
    copy_cmd.cmd_copy(args)
    assert says in capsys.readouterr().out
    if not flags:
        target = out["plan"]["target"]
        assert target["disks"][0]["size"] == 8 << 30
        assert [p["size"] for p in target["partitions"]] == [p.size for p in source.partitions]
    assert not (tmp_path / "c.qcow2").exists()


def test_a_dry_run_with_by_blocks_refuses_what_blocks_cannot_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = Layout.from_json((DATA / "plan" / "bios-lvm.json").read_text())
    monkeypatch.setattr(command, "probe_source", lambda cap: (source, {}, {}))
    with pytest.raises(UsageError, match=r"--by blocks: a conversion"):
        copy_cmd.cmd_copy(_blocks_args(tmp_path, "--dry-run", "--by", "blocks", "-T", "--convert", "xfs=ext4"))
