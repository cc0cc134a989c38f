"""Faults: imgclone killed hard (IMGCLONE_FAULT, SIGKILL) at the start of every step of every phase, and between
the streams of a capture; a disk that fills up while an archive is written.

The step names come from the phases' step tables (phases/restore.py, customize.py, finalize.py: STEPS), so a
new step gets its fault case without editing this file. After each kill: the process died of SIGKILL, nothing of
that run is left running after a few seconds (found by a marker in the environment every child inherits, and
by the target's path on command lines), the target image is not corrupt for qemu-img, no journal claims the
phase completed, and running the same command again either succeeds or says in one line what to do, and doing
that makes it succeed. The source image and the archive are never changed. Each case prints one line of
figures (the times, the advice followed) for docs/reliability.md.

Each phase is killed at every step in a chain: each run starts from what the previous kill left, so one phase
costs one run per step plus one, not two. Phases 1 and 2 run on the GPT + LVM test image (conftest's
gpt_lvm_capture; Phase 2 on the alternate the Phase 1 chain ends with); Phase 3 needs a clone that can run
grub-install and update-grub, so it runs on the BIOS Debian fixture restored with -P1, and that clone is booted
after the chain.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imgclone import faults
from imgclone.errors import ImgcloneError, PhaseStateError
from imgclone.guest.appliance import Appliance
from imgclone.guest.steps import step_names
from imgclone.model import journal as state
from imgclone.phases import customize, finalize, restore
from tests.conftest import ROOT, Captured, FixtureCapture, interruptible, own_tmpdir
from tests.loopfs import loop_fs
from tests.treecmp import file_sha256

Run = Callable[..., subprocess.CompletedProcess[bytes]]
Say = Callable[[str], None]
MARK = "IMGCLONE_TEST_FAULT_RUN"  # every process a run starts inherits it: how leftovers are found
KILLED = (-signal.SIGKILL, 128 + signal.SIGKILL)


# the steps that make btrfs subvolumes do nothing on the GPT + LVM image: a kill there is one at the next step's start
# (a restore of btrfs subvolumes killed after making them: tests/test_btrfs_clone.py)
PHASE1 = [s for s in step_names(restore.STEPS) if s not in ("create_subvolumes", "seal_subvolumes")]
PHASE2 = step_names(customize.STEPS)
PHASE3 = step_names(finalize.STEPS)


def test_step_lists_are_found() -> None:
    assert PHASE1[0] == "check_targets" and "extract_streams" in PHASE1
    assert PHASE2[0] == "mount_clone" and "install_packages" in PHASE2
    assert PHASE3[0] == "rename_volumes" and "install_grub" in PHASE3


def test_the_hook_is_inert_without_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(faults.ENV, raising=False)
    faults.maybe_fail("1", "partition")
    monkeypatch.setenv(faults.ENV, "1:partition")
    faults.maybe_fail("1", "create_lvm")  # another step: nothing


def test_phases_2_and_3_refuse_an_interrupted_phase1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A journal written when Phase 1 started writing, with no phase completed."""
    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path))
    target = str(tmp_path / "clone.qcow2")
    path = state.state_path([target])
    doc = {"targets": [{"path": target}], "layout": {}, "phases": {}, "phase1_started": "2026-11-26T12:00:00Z"}
    path.write_text(json.dumps(doc))
    assert state.interrupted_phase1(state.load([target]))
    with pytest.raises(PhaseStateError, match="did not complete"):
        state.load_alternate((target,))
    err = ImgcloneError("stream x is damaged")
    state.phase1_failed([target], err, started=False, targets_removed=False)
    assert str(err) == "stream x is damaged", "a run that failed before writing says nothing about the targets"
    state.phase1_failed([target], err, started=True, targets_removed=False)
    assert f"partly written; imgclone alt cleanup -d {target} --wipe" in str(err)
    state.phase1_failed([target], err, started=True, targets_removed=True)
    assert not path.exists(), "the journal of images that were removed is forgotten"


# -- helpers --------------------------------------------------------------------------------------------------------


def ours(mark: str) -> list[str]:
    """Processes whose environment holds this run's marker (imgclone, zstd, qemu, guestmount, ...)."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(f"{pid} {cmd[:160]}")
    return found


def assert_nothing_left(mark: str, *paths: Path, wait: float = 20.0) -> float:
    """Wait (up to `wait` s) until no process of the run is left; return how long that took."""
    t0 = time.monotonic()
    while True:
        left = ours(mark)
        for p in paths:
            res = subprocess.run(["pgrep", "-af", str(p)], capture_output=True, text=True, check=False)
            left += [ln for ln in res.stdout.splitlines() if "pgrep" not in ln]
        if not left:
            return time.monotonic() - t0
        if time.monotonic() - t0 > wait:
            pytest.fail(f"left running {wait:g} s after the kill: {left}")
        time.sleep(0.5)


def one_line(r: subprocess.CompletedProcess[bytes], notes: bool = False) -> str:
    """The error: one line on stderr, no traceback (notes: imgclone's progress notes may come before it)."""
    err = r.stderr.decode()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if notes:
        assert all(ln.startswith("imgclone: ") for ln in lines), f"not imgclone's lines:\n{err}"
        lines = [ln for ln in lines if ln.startswith("imgclone: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, f"not one clear line (rc {r.returncode}):\n{err}"
    return lines[0]


def journals(state_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(state_dir.glob("*.json"))] if state_dir.is_dir() else []


def completed(state_dir: Path, phase: str) -> bool:
    return any(phase in doc.get("phases", {}) for doc in journals(state_dir))


def qemu_img_check(image: Path) -> int:
    """0 clean, 3 only leaked clusters (harmless); 2 would be corruption. A QEMU that is still closing its files
    after its command line and environment are gone (so nothing of the run looks left) holds the image's lock:
    wait for it, for up to 30 s."""
    if not image.exists():
        return 0
    for _ in range(60):
        r = subprocess.run(["qemu-img", "check", "-q", str(image)], capture_output=True, text=True, check=False)
        if "lock" not in r.stderr:
            break
        time.sleep(0.5)
    if r.returncode not in (0, 3):
        print(f"qemu-img check {image}: exit {r.returncode}: {r.stdout}{r.stderr}")
    return r.returncode


def report(figures: Say, line: str) -> None:
    """A line of figures, printed even without -s (and under xdist at the end of the run: conftest's figures)."""
    figures(f"FAULT {line}")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A state directory of the test's own and a marker for this run's processes."""
    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path / "state"))
    return {MARK: uuid.uuid4().hex}


def read_files(image: Path, mounts: list[tuple[str, str]], *paths: str) -> list[bytes]:
    g = Appliance()
    g.add_drive(str(image), readonly=True, format="qcow2")
    with g:
        for dev, mp in mounts:
            g.mount_ro(dev, mp)
        return [bytes(g.read_file(p)) for p in paths]


# -- the chains ---------------------------------------------------------------------------------------------------


def rerun_following_advice(imgclone: Run, argv: list[str], env: dict[str, str], target: Path) -> tuple[
        subprocess.CompletedProcess[bytes], list[str]]:  # fmt: skip
    """Run argv until it is killed or succeeds; a refusal must say in one line what to do: do it, run again."""
    followed: list[str] = []
    extra: list[str] = []
    for _ in range(3):
        r = imgclone(*argv, *extra, env=env)
        if r.returncode == 0 or r.returncode in KILLED:
            return r, followed
        line = one_line(r)
        if "alt cleanup" in line and "--wipe" in line and "alt cleanup --wipe" not in followed:
            c = imgclone("alt", "cleanup", "-d", str(target), "--wipe", env=env)
            assert c.returncode == 0, f"the advice `alt cleanup --wipe` failed: {c.stderr.decode()}"
            followed.append("alt cleanup --wipe")
        elif "--force" in line and "does not override" not in line and not extra:
            extra = ["--force"]
            followed.append("--force")
        else:
            pytest.fail(f"{argv[:2]} refused with no advice left to follow: {line} (followed: {followed})")
    pytest.fail(f"{argv[:2]} still fails after following {followed}")


def kill_at_every_step(imgclone: Run, argv: list[str], env: dict[str, str], target: Path, phase: str,
                       steps: list[str], figures: Say) -> None:  # fmt: skip
    """Kill the phase at each step in turn, each run starting from what the last kill left (following the advice
    the run gives), with the checks of the module docstring after every kill; then the phase without a fault."""
    state_dir = Path(os.environ["IMGCLONE_STATE_DIR"])
    for step in steps:
        t0 = time.monotonic()
        r, followed = rerun_following_advice(imgclone, argv, {**env, faults.ENV: f"{phase}:{step}"}, target)
        killed_after = time.monotonic() - t0
        assert r.returncode in KILLED, f"not killed at {phase}:{step} (rc {r.returncode}): {r.stderr.decode()}"
        gone = assert_nothing_left(env[MARK], target)
        assert not completed(state_dir, phase), f"a journal claims that Phase {phase} killed at {step} completed"
        assert qemu_img_check(target) in (0, 3), f"{target} is corrupt after the kill at {phase}:{step}"
        if phase == "1":
            r2 = imgclone("restore", "-d", str(target), "-P2", "-R", "/etc/resolv.conf", env=env)
            assert r2.returncode == 1 and "Phase 1" in one_line(r2), "Phase 2 must refuse a killed Phase 1"
        how = " after " + " + ".join(followed) if followed else ""
        report(figures, f"phase {phase} step {step}: killed {killed_after:.0f} s into the run{how}, "
               f"nothing left after {gone:.1f} s")  # fmt: skip
    t0 = time.monotonic()
    r, followed = rerun_following_advice(imgclone, argv, env, target)
    assert r.returncode == 0, r.stderr.decode()
    assert completed(state_dir, phase)
    how = " after " + " + ".join(followed) if followed else ""
    report(figures, f"phase {phase}: the same command without a fault succeeded in {time.monotonic() - t0:.0f} s{how}")


FIRSTBOOT = "#!/bin/sh\necho IMGCLONE-FIRSTBOOT\n"
HOST_SCRIPT = '#!/bin/sh\nset -e\necho "written by -s" >> "$ALT_INST/etc/imgclone-s-test"\n'


def phase2_args(tmp_path: Path) -> list[str]:
    """Every Phase 2 flag the GPT + LVM image can take (it has no dpkg: no -l)."""
    (tmp_path / "resolv.conf").write_text("nameserver 192.0.2.53\n")
    for name, text in (("fb.sh", FIRSTBOOT), ("host.sh", HOST_SCRIPT)):
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    return ["-R", str(tmp_path / "resolv.conf"), "-O", "-c", "ttyS0,115200", "-x", str(tmp_path / "fb.sh"),
            "-s", str(tmp_path / "host.sh"), "--alt-inst", str(tmp_path / "alt_inst")]  # fmt: skip


def ctrl_c_during_the_script(target: Path, tmp_path: Path, env: dict[str, str],
                             figures: Say) -> None:  # fmt: skip
    """Ctrl-C (SIGINT to the whole foreground group, as a terminal sends it) while the -s script runs with the clone
    exported at /alt_inst by FUSE: exit 130, one line, the FUSE mount gone, nothing of the run left, no temp files."""
    started = tmp_path / "script-started"
    script = tmp_path / "slow.sh"
    script.write_text(f"#!/bin/sh\ntouch {started}\nsleep 300\n")
    script.chmod(0o755)
    alt = tmp_path / "alt_inst_int"
    tmp = own_tmpdir(tmp_path / "tmp")  # its temp files, apart from those of other tests' runs
    temps = set(glob.glob(f"{tmp['TMPDIR']}/imgclone-*"))
    argv = [sys.executable, "-m", "imgclone", "restore", "-d", str(target), "-P2", "-s", str(script), "--alt-inst",
            str(alt)]  # fmt: skip
    p = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env, **tmp}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True, preexec_fn=interruptible)  # fmt: skip
    deadline = time.monotonic() + 600
    while not started.exists():
        assert p.poll() is None, f"Phase 2 ended before its script ran: {p.communicate()[1].decode()}"
        assert time.monotonic() < deadline, "the -s script did not start in 600 s"
        time.sleep(0.5)
    t0 = time.monotonic()
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=300)
    took = time.monotonic() - t0
    assert p.returncode == 130, err.decode()
    assert b"Traceback" not in err and b"interrupted" in err, err.decode()
    assert str(alt) not in Path("/proc/mounts").read_text(), "the FUSE mount at --alt-inst is left"
    assert not alt.exists(), "the --alt-inst directory made for the run is left"
    gone = assert_nothing_left(env[MARK], target)
    assert set(glob.glob(f"{tmp['TMPDIR']}/imgclone-*")) == temps, "temp files were left behind"
    report(figures, f"Ctrl-C during the -s script: exit 130 after {took:.1f} s, FUSE mount and --alt-inst gone, "
           f"nothing left after {gone:.1f} s")  # fmt: skip


@pytest.mark.integration
def test_phases_1_and_2_killed_at_every_step(
    gpt_lvm_capture: Captured, tmp_path: Path, imgclone: Run, env: dict[str, str], figures: Say
) -> None:
    """Phase 1 of the GPT + LVM test image killed at each of its steps, then Phase 2 (every flag that image can take)
    killed at each of its steps on the alternate the Phase 1 chain ended with."""
    image, archive, image_sha, _ = gpt_lvm_capture
    archive_sha = file_sha256(archive)
    target = tmp_path / "clone.qcow2"
    p1 = ["restore", "-a", str(archive), "-d", str(target), "-P1", "--no-progress"]
    kill_at_every_step(imgclone, p1, env, target, "1", PHASE1, figures)
    assert file_sha256(image) == image_sha and file_sha256(archive) == archive_sha

    p2 = ["restore", "-d", str(target), "-P2", *phase2_args(tmp_path)]
    kill_at_every_step(imgclone, p2, env, target, "2", PHASE2, figures)
    assert not (tmp_path / "alt_inst").exists(), "the -s mount point made for the run is removed"
    ctrl_c_during_the_script(target, tmp_path, env, figures)
    mounts = [("/dev/altinst_rootvg/alt_root", "/")]
    resolv, s_file, grub = read_files(target, mounts, "/etc/resolv.conf", "/etc/imgclone-s-test", "/etc/default/grub")
    assert resolv == b"nameserver 192.0.2.53\n"
    # each run killed at a later step had run the script, and so did the run to the end
    runs = sum(PHASE2.index(step) > PHASE2.index("run_script") for step in PHASE2) + 1
    assert s_file == b"written by -s\n" * runs, "the -s script runs once per run that reaches it"
    assert grub.count(b"console=ttyS0,115200") == 1, "-c applied once, however many runs were killed"
    assert_nothing_left(env[MARK], target, wait=10)


@pytest.mark.integration
def test_phase3_killed_at_every_step_and_the_clone_boots(
    bios_capture: FixtureCapture,
    tmp_path: Path,
    imgclone: Run,
    env: dict[str, str],
    figures: Say,
) -> None:
    """Phase 3 needs a clone that can run grub-install and update-grub: the BIOS Debian fixture, restored with -P1."""
    source, source_sha, archive, _, _ = bios_capture
    target = tmp_path / "clone.qcow2"
    r = imgclone("restore", "-a", str(archive), "-d", str(target), "-P1", "--no-progress", env=env)
    assert r.returncode == 0, r.stderr.decode()
    p3 = ["restore", "-d", str(target), "-P3", "--no-progress"]
    kill_at_every_step(imgclone, p3, env, target, "3", PHASE3, figures)
    t0 = time.monotonic()
    b = imgclone("boot-test", str(target), "--timeout", "600", env=env)
    assert b.returncode == 0, (b.stdout + b.stderr).decode()
    assert file_sha256(source) == source_sha, "the BIOS fixture changed"
    report(figures, f"phase 3: after {len(PHASE3)} kills and a run to the end, the clone booted "
           f"(boot-test {time.monotonic() - t0:.0f} s)")  # fmt: skip


# -- capture --------------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_capture_killed_between_streams(
    gpt_lvm_capture: Captured, tmp_path: Path, imgclone: Run, env: dict[str, str], figures: Say
) -> None:
    image, _, image_sha, _ = gpt_lvm_capture
    out = tmp_path / "a.mksysb"
    t0 = time.monotonic()
    r = imgclone("capture", str(image), "-o", str(out), "--no-progress", env={**env, faults.ENV: "capture:stream"})
    killed_after = time.monotonic() - t0
    assert r.returncode in KILLED, r.stderr.decode()
    gone = assert_nothing_left(env[MARK])
    assert not out.exists(), "a killed capture must not leave a file under the archive's name"
    partial = out.with_name(out.name + ".partial")
    left_partial = partial.exists()
    r = imgclone("capture", str(image), "-o", str(out), "--no-progress", env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert not partial.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a.mksysb"]
    v = imgclone("archive", "verify", str(out), env=env)
    assert v.returncode == 0, v.stdout.decode()
    assert file_sha256(image) == image_sha
    report(
        figures,
        f"capture between streams: killed after {killed_after:.0f} s, nothing left after {gone:.1f} s, "
        f"{'a .partial file was left and the next capture replaced it' if left_partial else 'no file left'}",
    )


# -- disk full ------------------------------------------------------------------------------------------------------


def fill(directory: Path, leave: int) -> Path:
    """Fill the filesystem, then free `leave` bytes at the end of the filler."""
    filler = directory / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    size = filler.stat().st_size
    os.truncate(filler, max(size - leave, 0))
    return filler


@pytest.mark.integration
def test_disk_full_while_writing_the_archive(
    gpt_lvm_capture: Captured, tmp_path: Path, imgclone: Run, env: dict[str, str], figures: Say
) -> None:
    image, archive, image_sha, _ = gpt_lvm_capture
    needed = archive.stat().st_size
    with loop_fs(tmp_path, "ext4", 8, name="small") as mnt:
        freed = needed // 2  # after ENOSPC: about this much can be written again (statfs counts differ)
        fill(mnt, freed)
        before = sorted(p.name for p in mnt.iterdir())
        out = mnt / "a.mksysb"
        r = imgclone("capture", str(image), "-o", str(out), "--no-progress", env=env)
        line = one_line(r, notes=True)
        assert r.returncode == 1, line
        assert "No space left on device" in line and str(out) in line, line
        assert sorted(p.name for p in mnt.iterdir()) == before, "the partial archive must be removed"
        assert_nothing_left(env[MARK])
    assert file_sha256(image) == image_sha
    report(figures, f"disk full: filled, then {freed} bytes freed for a {needed}-byte archive: exit 1, {line!r}")
