"""A Phase 1 that fails after it started writing: created images removed; existing targets wiped back to blank under
ALT_BAK_ERR_FAIL=1 (as alt cleanup --wipe), else the error says they are partly written and how to wipe them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from imgclone.errors import ImgcloneError
from imgclone.host.targets import TargetDisk
from imgclone.model import journal as state
from imgclone.model.layout import Layout
from imgclone.model.manifest import Manifest, Source
from imgclone.phases.restore import Restore, RestoreOptions, clean_up_failure, journal_of
from imgclone.plan.planner import make_plan
from imgclone.plan.types import PlanOptions, Target

DATA = Path(__file__).parent / "data"
GiB = 1 << 30


def failed_run(tmp_path: Path, *, existing: bool, fail: bool, started: bool = True) -> tuple[Restore, list[str]]:
    """The context of a Phase 1 on one target, after record_start journaled it (unless not started)."""
    layout = Layout.from_json((DATA / "layout-bios-lvm.json").read_text())
    target = tmp_path / "clone.img"
    target.write_bytes(b"half written")
    disk = TargetDisk(str(target), "image", "raw", 40 * GiB, exists=existing)
    plan = make_plan(layout, [Target(disk.path, disk.size, 512)], PlanOptions())
    opts = RestoreOptions(archive="a.mksysb", targets=(disk.path,), wipe_on_failure=fail)
    ctx = Restore(
        targets=opts.targets,
        opts=opts,
        manifest=Manifest(Layout(), Source("test"), None, created="now"),
        disks=[disk],
        plan=plan,
    )
    if not existing:
        ctx.created.append(disk)
    if started:
        ctx.timings["record_start"] = 0.0
        state.save_phase1(opts.targets, journal_of(ctx), started=True)
    return ctx, list(opts.targets)


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


class Wipe:
    """Records what would be wiped; forgets the journal as alt cleanup --wipe does, or fails."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[list[str]] = []
        self.error = error

    def __call__(self, targets: Sequence[str]) -> list[str]:
        self.calls.append(list(targets))
        if self.error:
            raise self.error
        state.remove(targets)
        return ["wiped"]


def test_err_fail_wipes_an_existing_target_and_says_so(tmp_path: Path) -> None:
    ctx, targets = failed_run(tmp_path, existing=True, fail=True)
    err, wipe = ImgcloneError("stream streams/fs-var.tar.zst is damaged"), Wipe()
    clean_up_failure(ctx, err, wipe)
    assert wipe.calls == [targets]
    assert str(err) == ("stream streams/fs-var.tar.zst is damaged (ALT_BAK_ERR_FAIL=1: the targets were wiped back "
                        "to blank)")  # fmt: skip
    assert state.load(targets) is None, "nothing is left to clean"


def test_without_err_fail_the_error_says_how_to_clean(tmp_path: Path) -> None:
    ctx, targets = failed_run(tmp_path, existing=True, fail=False)
    err, wipe = ImgcloneError("stream streams/fs-var.tar.zst is damaged"), Wipe()
    clean_up_failure(ctx, err, wipe)
    assert wipe.calls == []
    assert f"the targets are partly written; imgclone alt cleanup -d {targets[0]} --wipe blanks them" in str(err)
    assert state.interrupted_phase1(state.load(targets))


def test_a_wipe_that_fails_is_added_to_the_error(tmp_path: Path) -> None:
    ctx, targets = failed_run(tmp_path, existing=True, fail=True)
    err = ImgcloneError("tar_in: No space left on device")
    clean_up_failure(ctx, err, Wipe(ImgcloneError("appliance did not start")))
    assert "partly written" in str(err) and "wiping the targets failed too (appliance did not start)" in str(err)
    assert json.loads(state.state_path(targets).read_text())["phase1_started"], "the journal stays for alt cleanup"


@pytest.mark.parametrize(("existing", "started", "error"), [
    (False, True, ImgcloneError("damaged")),  # a created image is removed, not wiped
    (True, False, ImgcloneError("damaged")),  # failed before writing: the target is as it was
    (True, True, KeyboardInterrupt()),  # an interrupt stops at once
])  # fmt: skip
def test_nothing_to_wipe(tmp_path: Path, existing: bool, started: bool, error: BaseException) -> None:
    ctx, targets = failed_run(tmp_path, existing=existing, fail=True, started=started)
    wipe = Wipe()
    clean_up_failure(ctx, error, wipe)
    assert wipe.calls == []
    assert Path(targets[0]).exists() == existing
