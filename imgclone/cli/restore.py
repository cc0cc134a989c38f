"""imgclone restore (alt_disk_mksysb): the request from the arguments, its phases, what they did."""

from __future__ import annotations

import argparse

from imgclone.cli.output import print_result
from imgclone.cli.report import Report
from imgclone.cli.rules import restore_request
from imgclone.phases.command import run_phases


def cmd_restore(args: argparse.Namespace) -> int:
    """imgclone restore: Phase 1 from the archive, then Phases 2 and 3 as -P says."""
    req = restore_request(args)
    report = Report(args, {"targets": list(req.targets)})
    run_phases(req, report)
    return print_result(args, report.result)
