"""imgclone copy (alt_disk_copy): the request from the arguments, the copy (copy/command.py), what it did."""

from __future__ import annotations

import argparse

from imgclone.cli.output import print_result
from imgclone.cli.report import Report
from imgclone.cli.rules import copy_request
from imgclone.copy import command
from imgclone.phases import command as phases
from imgclone.phases.phase import Phase


def cmd_copy(args: argparse.Namespace) -> int:
    """alt_disk_copy: the three phases from the running system (or --source) onto the targets."""
    req = copy_request(args)
    if Phase.RESTORE not in req.phases.phases:  # -P23 on the targets of an earlier -P1: no source at all
        report = Report(args, {"targets": list(req.targets)})
        phases.run_phases(req.phases, report)
        return print_result(args, report.result)
    if req.phases.restore.dry_run:
        report = Report(args, {})
        command.dry_run(req, report)
        return print_result(args, report.result)
    report = Report(args, {"targets": list(req.targets), "archive": args.archive})
    read_errors = command.copy(req, report)
    if read_errors:
        report.result["read_errors"] = True
    return print_result(args, report.result, rc=1 if read_errors else 0)
