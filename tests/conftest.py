"""Shared fixtures: the imgclone command as a subprocess, integration prerequisites, and what a run shares.

Under pytest-xdist (`make test` runs two workers) each worker is a session of its own: a session fixture would run
once per worker. The captures of the fixture images (a minute or three each under TCG) are made once per run
instead, whatever the number of workers, by shared(): the first worker to need one makes it, under a file lock in
the directory every worker of the run shares, and leaves a record there that the others read. Every test also gets
a journal directory and a lock directory of its own (IMGCLONE_STATE_DIR, IMGCLONE_LOCK_DIR), so that two tests
running at once never see each other's alternates or locks, nor those of this host.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pytest

pytest_plugins = ["tests.budget"]
ROOT = Path(__file__).resolve().parent.parent
Captured = tuple[Path, Path, str, subprocess.CompletedProcess[bytes]]
T = TypeVar("T")


class FixtureCapture(NamedTuple):
    """A bootable fixture image captured once per run: the image, its sha256 before, the archive, the run, its time."""

    source: Path
    before: str
    archive: Path
    run: subprocess.CompletedProcess[bytes]
    seconds: float


def _run_imgclone(*args: str, input: bytes | None = None, env: dict[str, str] | None = None,
                  stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "imgclone", *args], input=input, stdout=stdout,
                          stderr=subprocess.PIPE, env=full_env, cwd=ROOT, check=False)  # fmt: skip


@pytest.fixture
def imgclone() -> Callable[..., subprocess.CompletedProcess[bytes]]:
    """Run `imgclone ARGS` as a user would; returns the CompletedProcess (bytes)."""
    return _run_imgclone


# Seconds each of the longest tests took in the first whole run on two workers (2026-12-07, this machine): the
# order the workers take them in. A test not named here counts as INTEGRATION_SECONDS (an integration test) or 0.
EXPECTED_SECONDS = {
    "tests/test_faults.py::test_phases_1_and_2_killed_at_every_step": 734,
    "tests/test_bootnext.py::test_uefi_host_boots_its_clone_next_through_bootnext": 590,
    "tests/test_thin_clone.py::test_thin_fixture_copied_keeps_its_pool_verified_and_boots": 600,
    "tests/test_btrfs_clone.py::test_btrfs_default_fixture_copied_bigger_keeps_its_default_subvolume_and_boots": 500,
    "tests/test_btrfs_clone.py::test_btrfs_fixture_captured_offline_restored_smaller_verified_and_boots": 450,
    "tests/test_e2e.py::test_bios_clone_customized_and_converted_boots": 420,
    "tests/test_faults.py::test_phase3_killed_at_every_step_and_the_clone_boots": 355,
    "tests/test_e2e_more.py::test_uefi_clone_to_raw_image_boots": 327,
    "tests/test_e2e_more.py::test_vg_across_two_disks_boots": 297,
    "tests/test_e2e_more.py::test_image_copied_by_blocks_is_a_clone_beside_its_source_and_boots": 261,
    "tests/test_altop.py::test_query_wake_write_sleep_wipe_and_restore_again": 176,
    "tests/test_e2e_more.py::test_ext3_upgraded_to_ext4_on_a_disk_via_host_boots": 148,
    "tests/test_corruption.py::test_restore_from_a_damaged_archive_fails_and_says_so[stream-data-True]": 112,
    "tests/test_btrfs_clone.py::test_host_capture_restores_each_subvolume_and_keeps_snapshots_when_asked": 140,
    "tests/test_copy.py::test_copy_keeps_the_archive_when_asked": 106,
    "tests/test_copy.py::test_copy_refuses_a_conversion_its_content_cannot_survive": 101,
    "tests/test_copy.py::test_alt_disk_copy_of_an_image_phases_1_and_2": 99,
    "tests/test_restore.py::test_vg_spans_two_qcow2_targets": 95,
    "tests/test_restore.py::test_loop_device_as_a_physical_disk": 86,
    "tests/test_restore.py::test_grow_onto_a_larger_qcow2": 81,
    "tests/test_restore.py::test_fit_onto_a_small_raw_with_xfs": 78,
    "tests/test_faults.py::test_capture_killed_between_streams": 75,
    "tests/test_corruption.py::test_restore_failure_under_alt_bak_err_fail_wipes_an_existing_target": 67,
}
INTEGRATION_SECONDS = 30


def pytest_configure(config: pytest.Config) -> None:
    """Two workers on two cores: each appliance and boot-test VM gets one vCPU (IMGCLONE_VCPUS=1; imgclone's own
    default under TCG is two, for one run alone). Measured on the restore, copy and boot tests, two workers, here:
    571 s with two vCPUs, 521 s with one (docs/testing.md)."""
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        os.environ.setdefault("IMGCLONE_VCPUS", "1")


def expected_seconds(item: pytest.Item) -> int:
    if item.nodeid in EXPECTED_SECONDS:
        return EXPECTED_SECONDS[item.nodeid]
    return INTEGRATION_SECONDS if item.get_closest_marker("integration") else 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Integration tests need root (loop devices, mounts); without it they fail loudly, never skip silently.

    Under xdist (worksteal), each of the N workers starts with one contiguous Nth of the list and takes from the end
    of another's when it runs out: so the tests are sorted longest first (expected_seconds) and dealt out in turn,
    the list being the first worker's share, then the second's. Each worker starts on a long test, the unit tests
    fill the gaps at the end, and the long ones are never left for the end of one worker while the other waits.
    Every worker sorts the same way, as xdist requires."""
    if os.geteuid() != 0:
        for item in items:
            if item.get_closest_marker("integration"):
                item.add_marker(pytest.mark.skip(reason="integration tests need root (loop devices, mounts)"))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if os.environ.get("PYTEST_XDIST_WORKER") and workers > 1:
        ordered = sorted(items, key=expected_seconds, reverse=True)  # stable: file order among equals
        items[:] = [item for share in range(workers) for item in ordered[share::workers]]


@pytest.fixture(autouse=True)
def own_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A journal directory and a lock directory of the test's own (a test may set its own instead): tests running
    at once must not see each other's alternates (`alt query` lists all of a directory) nor this host's. Outside
    tmp_path, which tests list; set apart from the `monkeypatch` fixture, which a test may undo()."""
    own = tmp_path_factory.mktemp("own-state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGCLONE_STATE_DIR", str(own / "state"))
        mp.setenv("IMGCLONE_LOCK_DIR", str(own / "locks"))
        yield own


def own_tmpdir(path: Path) -> dict[str, str]:
    """The environment for a run whose temporary files go to `path` (made here): a test that checks that a run
    leaves none looks there only, not at /tmp, where the runs of other tests (and of other sessions) come and go.
    libguestfs keeps its appliance cache where it was (it follows TMPDIR otherwise, and would build another)."""
    path.mkdir(exist_ok=True)
    cachedir = os.environ.get("LIBGUESTFS_CACHEDIR") or os.environ.get("TMPDIR") or "/var/tmp"
    return {"TMPDIR": str(path), "LIBGUESTFS_CACHEDIR": cachedir}


# -- made once per run, whatever the number of xdist workers ----------------------------------------------------------


def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory all workers of this run share: the parent of a worker's basetemp, or the basetemp itself
    without xdist (the pattern of pytest-xdist's documentation)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def shared(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], T]) -> T:
    """make(directory) once per run: the first worker to ask runs it, under a lock, in shared_dir()/name, and
    pickles what it returns next to it; a worker asking later (or waiting meanwhile) reads that record. A make()
    that failed is not run again: the others fail with its message."""
    root = shared_dir(tmp_path_factory)
    record, work = root / f"{name}.pickle", root / name
    worker = os.environ.get("PYTEST_XDIST_WORKER", "this session")
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if record.exists():
            kept: dict[str, Any] = pickle.loads(record.read_bytes())
            if "error" in kept:
                pytest.fail(f"{name} failed in {kept['worker']}: {kept['error']}", pytrace=False)
            value: T = kept["value"]
            return value
        shutil.rmtree(work, ignore_errors=True)  # what a worker killed while making it left
        work.mkdir()
        t0 = time.monotonic()
        try:
            value = make(work)
        except (Exception, pytest.fail.Exception) as e:
            _write_record(record, {"error": f"{type(e).__name__}: {e}", "worker": worker})
            raise
        _write_record(record, {"value": value, "worker": worker})
        _note_shared(name, time.monotonic() - t0, worker)
        return value


def _write_record(record: Path, doc: dict[str, Any]) -> None:
    partial = record.with_name(record.name + ".partial")
    partial.write_bytes(pickle.dumps(doc))
    partial.rename(record)


def _note_shared(name: str, seconds: float, worker: str) -> None:
    """One line in the suite's budget log (tests/budget.py): what was made once for the run, where, how long."""
    log = os.environ.get("IMGCLONE_BUDGET_LOG")
    if log:
        test = os.environ.get("PYTEST_CURRENT_TEST", "outside a test")
        with open(log, "a") as f:
            f.write(f"shared\t{test}\t{name} {seconds:.0f} s ({worker})\n")


@pytest.fixture(scope="session")
def gpt_lvm_capture(tmp_path_factory: pytest.TempPathFactory) -> Captured:
    """The GPT + LVM test image captured offline once per run: (image, archive, image sha256, the run)."""

    def make(work: Path) -> Captured:
        from fixtures.small_image import gpt_lvm_image
        from tests.treecmp import file_sha256

        image = gpt_lvm_image()
        before = file_sha256(image)
        extra = work / "exclude.list"
        extra.write_text("^./home/u/file with space$\n")
        out = work / "img.mksysb"
        r = _run_imgclone("capture", str(image), "-o", str(out), "-e", str(extra), "--json")
        assert r.returncode == 0, r.stderr.decode()
        return image, out, before, r

    return shared(tmp_path_factory, "gpt-lvm-capture", make)


def _capture_fixture(tmp_path_factory: pytest.TempPathFactory, name: str) -> FixtureCapture:
    """Bootable fixture `name` (fixtures/build.py) captured once per run (--json: its summary on stdout)."""

    def make(work: Path) -> FixtureCapture:
        from fixtures.build import fixture_path
        from tests.treecmp import file_sha256

        source = fixture_path(name)
        before = file_sha256(source)
        archive = work / f"{name}.mksysb"
        t0 = time.monotonic()
        r = _run_imgclone("capture", str(source), "-o", str(archive), "--no-progress", "--json")
        assert r.returncode == 0, r.stderr.decode()[-4000:]
        return FixtureCapture(source, before, archive, r, time.monotonic() - t0)

    return shared(tmp_path_factory, f"{name}-capture", make)


@pytest.fixture(scope="session")
def bios_capture(tmp_path_factory: pytest.TempPathFactory) -> FixtureCapture:
    """The bootable BIOS fixture captured once per run."""
    return _capture_fixture(tmp_path_factory, "bios")


@pytest.fixture(scope="session")
def uefi_capture(tmp_path_factory: pytest.TempPathFactory) -> FixtureCapture:
    """The bootable UEFI fixture captured once per run."""
    return _capture_fixture(tmp_path_factory, "uefi")


@pytest.fixture(scope="session")
def ext3_capture(tmp_path_factory: pytest.TempPathFactory) -> FixtureCapture:
    """The bootable ext3 fixture captured once per run."""
    return _capture_fixture(tmp_path_factory, "ext3")


# -- what tests print for the docs --------------------------------------------------------------------------------


@pytest.fixture
def figures(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """say(line): a line of figures for the docs, printed even without -s; under xdist (whose workers' output goes
    nowhere) tests/budget.py prints the lines at the end of the run instead, from the test reports."""

    def say(line: str) -> None:
        request.node.user_properties.append(("figures", line))
        with capsys.disabled():
            print(f"\n{line}", flush=True)

    return say


def interruptible() -> None:
    """preexec_fn for a process a test will Ctrl-C: SIGINT back to its default. A shell without job control
    starts background jobs with SIGINT ignored, and exec keeps an ignored signal ignored: under such a parent
    (a CI runner, `make test &`) Python would install no KeyboardInterrupt handler and the SIGINT would be lost."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
