"""Shared fixtures: the imgclone command as a subprocess, and integration prerequisites."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytest_plugins = ["tests.budget"]
ROOT = Path(__file__).resolve().parent.parent
Captured = tuple[Path, Path, str, subprocess.CompletedProcess[bytes]]


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Integration tests need root (loop devices, mounts); without it they fail loudly, never skip silently."""
    if os.geteuid() != 0:
        for item in items:
            if item.get_closest_marker("integration"):
                item.add_marker(pytest.mark.skip(reason="integration tests need root (loop devices, mounts)"))


@pytest.fixture(scope="session")
def gpt_lvm_capture(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path, str, subprocess.CompletedProcess[bytes]]:
    """The GPT + LVM test image captured offline once per session: (image, archive, image sha256, the run)."""
    from fixtures.small_image import gpt_lvm_image
    from tests.treecmp import file_sha256

    image = gpt_lvm_image()
    before = file_sha256(image)
    work = tmp_path_factory.mktemp("offline")
    extra = work / "exclude.list"
    extra.write_text("^./home/u/file with space$\n")
    out = work / "img.mksysb"
    r = _run_imgclone("capture", str(image), "-o", str(out), "-e", str(extra), "--json")
    assert r.returncode == 0, r.stderr.decode()
    return image, out, before, r


@pytest.fixture(scope="session")
def bios_capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """The bootable BIOS fixture captured once per session: (fixture image, its sha256 before, the archive)."""
    from fixtures.build import fixture_path
    from tests.treecmp import file_sha256

    source = fixture_path("bios")
    before = file_sha256(source)
    archive = tmp_path_factory.mktemp("bios") / "bios.mksysb"
    r = _run_imgclone("capture", str(source), "-o", str(archive), "--no-progress")
    assert r.returncode == 0, r.stderr.decode()
    return source, before, archive


def interruptible() -> None:
    """preexec_fn for a process a test will Ctrl-C: SIGINT back to its default. A shell without job control
    starts background jobs with SIGINT ignored, and exec keeps an ignored signal ignored: under such a parent
    (a CI runner, `make test &`) Python would install no KeyboardInterrupt handler and the SIGINT would be lost."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
