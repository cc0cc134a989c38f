"""The suite's own budget, printed at its end: test time per file, appliance launches, QEMU boots, fixture builds.

Counting happens outside imgclone: at the start of the run a wrapper named qemu-system-x86_64 is put first on
PATH and given to libguestfs as LIBGUESTFS_HV; it appends one line per start of a real machine to a log and execs
the real QEMU (same pid, so imgclone's watchdog still sees its appliance). The wrapper tells an appliance (its
kernel is libguestfs's, under .guestfs-*) from a boot (any other -drive or -kernel); libguestfs's capability
queries (-help, -device ?, -qmp) are not counted. Each line carries PYTEST_CURRENT_TEST, which every test's
processes inherit, so launches land on the test that caused them (a session fixture's on the first test that used
it). fixtures/cache.py adds a line for each fixture it builds, tests/conftest.py's shared() one for each thing it
makes once for the run (the captures of the fixtures). Under pytest-xdist the controller makes the wrapper before the
workers start; they inherit its environment and append to the same log, and their reports reach the controller's
hooks here: the table is the whole run's, its last row says how many workers ran it, in how long (wall). Lines of
figures that tests print for the docs (conftest's `figures`) are lost in a worker's output: under xdist they are
printed here at the end, from the reports.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

LOG_ENV = "IMGCLONE_BUDGET_LOG"
REAL_QEMU = "/usr/bin/qemu-system-x86_64"
WRAPPER = """#!/bin/bash
# tests/budget.py: count this start of QEMU, then become the real one
kind=
case " $* " in
  *" -help "*|*" -version "*|*" -device ?"*|*" -qmp stdio"*) ;;
  *"/.guestfs-"*"/kernel "*|*"/.guestfs-"*"/kernel") kind=appliance ;;
  *" -drive "*|*" -kernel "*|*" -hda "*) kind=boot ;;
esac
if [ -n "$kind" ] && [ -n "${IMGCLONE_BUDGET_LOG:-}" ]; then
  printf '%s\\t%s\\t%s\\n' "$kind" "${PYTEST_CURRENT_TEST:-outside a test}" "$(date +%s)" >> "$IMGCLONE_BUDGET_LOG"
fi
exec REAL "$@"
"""


@dataclass
class FileBudget:
    seconds: float = 0.0
    tests: int = 0
    appliances: int = 0
    boots: int = 0
    fixtures: list[str] = field(default_factory=list)
    shared: list[str] = field(default_factory=list)


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def parse_log(text: str) -> dict[str, FileBudget]:
    """Per test file: appliances, boots and fixture builds from the log's lines (kind, test, detail)."""
    files: dict[str, FileBudget] = defaultdict(FileBudget)
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        kind, test = parts[0], parts[1]
        budget = files[_file_of(test.rsplit(" (", 1)[0])]
        if kind == "appliance":
            budget.appliances += 1
        elif kind == "boot":
            budget.boots += 1
        elif kind == "fixture" and len(parts) > 2:
            budget.fixtures.append(parts[2])
        elif kind == "shared" and len(parts) > 2:
            budget.shared.append(parts[2])
    return files


def table(files: dict[str, FileBudget], wall: float, workers: int = 0) -> list[str]:
    """The budget as printed: one row per file, slowest first, then the totals (workers: xdist's, 0 without),
    then what was made once for the run."""
    rows = sorted(files.items(), key=lambda kv: -kv[1].seconds)
    how = f"{workers} workers" if workers else "no xdist"
    last = f"all (test time; wall {wall:.0f} s, {how})"
    width = max([len(last), *(len(name) for name, _ in rows)])
    out = [f"{'file':<{width}} {'seconds':>8} {'tests':>5} {'appl.':>5} {'boots':>5}  fixtures built"]
    for name, b in rows:
        out.append(f"{name:<{width}} {b.seconds:8.1f} {b.tests:5d} {b.appliances:5d} {b.boots:5d}  "
                   f"{', '.join(b.fixtures)}")  # fmt: skip
    total = FileBudget(
        sum(b.seconds for b in files.values()), sum(b.tests for b in files.values()),
        sum(b.appliances for b in files.values()), sum(b.boots for b in files.values()),
        [f for b in files.values() for f in b.fixtures],
    )  # fmt: skip
    out.append(f"{last:<{width}} {total.seconds:8.1f} {total.tests:5d} "
               f"{total.appliances:5d} {total.boots:5d}  {len(total.fixtures)} built")  # fmt: skip
    made = [s for b in files.values() for s in b.shared]
    if made:
        out.append(f"made once for the run: {', '.join(made)}")
    return out


class Budget:
    def __init__(self) -> None:
        self.start = time.monotonic()
        self.files: dict[str, FileBudget] = defaultdict(FileBudget)
        self.own_dir: str | None = None
        self.workers: set[str] = set()
        self.figures: list[str] = []
        if not os.environ.get(LOG_ENV) and os.path.exists(REAL_QEMU):
            self.own_dir = tempfile.mkdtemp(prefix="imgclone-budget-")
            wrapper = Path(self.own_dir) / "qemu-system-x86_64"
            wrapper.write_text(WRAPPER.replace("exec REAL", f"exec {REAL_QEMU}"))
            wrapper.chmod(0o755)
            os.environ[LOG_ENV] = str(Path(self.own_dir) / "log")
            os.environ["LIBGUESTFS_HV"] = str(wrapper)
            os.environ["PATH"] = f"{self.own_dir}:{os.environ.get('PATH', '')}"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        budget = self.files[_file_of(report.nodeid)]
        budget.seconds += report.duration
        if report.when == "call" or (report.when == "setup" and report.skipped):
            budget.tests += 1
        if report.when == "teardown":  # the teardown report carries every line the test added
            self.figures += [str(v) for k, v in report.user_properties if k == "figures"]

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodeready(self, node: Any) -> None:
        """pytest-xdist: a worker is up."""
        self.workers.add(str(node.gateway.id))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.own_dir is None or not self.files:
            return  # a run with its own log (its caller prints), or one that ran no test
        log = Path(os.environ[LOG_ENV])
        counted = parse_log(log.read_text(errors="replace") if log.exists() else "")
        for name, b in counted.items():
            mine = self.files[name]
            mine.appliances, mine.boots, mine.fixtures, mine.shared = b.appliances, b.boots, b.fixtures, b.shared
        if self.workers and self.figures:  # without xdist the tests printed them as they ran
            terminalreporter.section("figures")
            for line in self.figures:
                terminalreporter.write_line(line)
        terminalreporter.section("budget")
        for line in table(self.files, time.monotonic() - self.start, len(self.workers)):
            terminalreporter.write_line(line)

    def pytest_unconfigure(self) -> None:
        if self.own_dir:
            shutil.rmtree(self.own_dir, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller counts
    config.pluginmanager.register(Budget(), "imgclone-budget")
