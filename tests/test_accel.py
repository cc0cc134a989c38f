"""The accelerator choice: forced, remembered, probed (with a fake runner)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgclone.errors import CommandError, UsageError
from imgclone.host import accel
from imgclone.host.run import Result
from tests.fakes import FakeRunner


def test_forced_by_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(accel.ENV, "TCG")
    assert accel.choose(FakeRunner()) == "tcg"
    monkeypatch.setenv(accel.ENV, "hvf")
    with pytest.raises(UsageError, match="expected kvm or tcg"):
        accel.choose(FakeRunner())


def test_probe_reads_the_kernel_panic() -> None:
    ok = FakeRunner({(accel.QEMU,): Result([], 0, b"... Kernel panic - not syncing: VFS", "")})
    assert accel.probe_kvm("/boot/vmlinuz", ok) is True
    silent = FakeRunner({(accel.QEMU,): Result([], 1, b"", "")})
    assert accel.probe_kvm("/boot/vmlinuz", silent) is False


def test_probe_timeout_means_tcg() -> None:
    def hang(argv: list[str], _input: bytes | None) -> Result:
        raise CommandError(argv, 124, "timed out after 20 s")

    assert accel.probe_kvm("/boot/vmlinuz", FakeRunner({(accel.QEMU,): hang})) is False


def test_choice_is_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(accel.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(accel.os, "access", lambda *_a: True)
    monkeypatch.setattr(accel, "_probe_kernel", lambda: "/boot/vmlinuz-test")
    runner = FakeRunner({(accel.QEMU,): Result([], 0, b"Kernel panic", "")})
    assert accel.choose(runner) == "kvm"
    assert accel.choose(runner) == "kvm"
    assert len(runner.calls) == 1, "the probe ran twice: the answer was not remembered"
    accel.remember("tcg")
    assert accel.choose(runner) == "tcg"


def test_the_choice_is_replaced_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs at once (a test suite's workers) read the cache while another writes it: a write that does not finish
    leaves the previous choice as it was, and no file of its own behind."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(accel, "_probe_kernel", lambda: "/boot/vmlinuz-test")
    accel.remember("kvm")
    cache = tmp_path / "imgclone" / "accel.json"
    before = cache.read_text()

    def interrupted(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(accel.os, "replace", interrupted)
        accel.remember("tcg")
    assert cache.read_text() == before
    assert [p.name for p in cache.parent.iterdir()] == ["accel.json"]
    accel.remember("tcg")
    assert '"accel": "tcg"' in cache.read_text() and [p.name for p in cache.parent.iterdir()] == ["accel.json"]


def test_vcpus_two_under_tcg_one_under_kvm_or_as_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(accel.VCPUS_ENV, raising=False)
    assert (accel.vcpus("tcg"), accel.vcpus("kvm")) == (2, 1)
    monkeypatch.setenv(accel.VCPUS_ENV, "1")
    assert (accel.vcpus("tcg"), accel.vcpus("kvm")) == (1, 1)
    for bad in ("0", "two", "65"):
        monkeypatch.setenv(accel.VCPUS_ENV, bad)
        with pytest.raises(UsageError, match=f"IMGCLONE_VCPUS={bad}: expected a number of vCPUs from 1 to 64"):
            accel.vcpus("tcg")
