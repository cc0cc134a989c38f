"""The listener of restore and copy: each finished part printed as text when it ends, gathered for --json.

The JSON document is a dict of the parts, printed at the end (print_result); its keys are those restore and copy
have always written: targets, plan, dry_run, phase1, phase2, phase3, boot_order, and for copy archive, by, why and
read_errors; and via (where the phases work, and why).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from imgclone.cli.output import say
from imgclone.copy.command import Captured, CopyOutcome, CopyPlanned, CopyWay
from imgclone.phases.command import BootOrder, Customized, Finalized, Planned, Restored, Via
from imgclone.units import human

FILES_NOTE = "FILES: inodes in use on the source filesystem, at most what its files need on the clone\n"


class Report:
    """Called with each Outcome as it happens; `result` is the --json document so far."""

    def __init__(self, args: argparse.Namespace, result: dict[str, Any]) -> None:
        self.args = args
        self.result = result

    def __call__(self, outcome: CopyOutcome) -> None:
        r, args = self.result, self.args
        match outcome:
            case Via(via, reason):
                r["via"] = {"via": via, "why": reason}
                say(args, f"the phases work on the clone via {via}: {reason}\n")
            case Planned(plan):
                r["plan"] = plan.to_dict()
                r["dry_run"] = True
                say(args, plan.table() + "\nnothing was written (--dry-run)\n")
            case Restored():
                r["plan"] = outcome.plan.to_dict()
                r["phase1"] = {"uuids": outcome.uuids, "timings": outcome.timings}
                say(args, phase1_text(outcome))
            case Customized(actions, notes, timings, requested):
                r["phase2"] = {"actions": actions, "notes": notes, "timings": timings}
                for note in notes:
                    print(f"imgclone: note: {note}", file=sys.stderr)
                if requested:
                    say(args, steps_text("Phase 2", actions or ["nothing changed"]))
                else:
                    say(args, "Phase 2: no customization requested\n")
            case Finalized(actions, timings):
                r["phase3"] = {"actions": actions, "timings": timings}
                say(args, steps_text("Phase 3", actions))
            case BootOrder(lines, rebooting):
                r["boot_order"] = lines
                say(args, "\n".join(lines) + "\n")
                if rebooting:
                    say(args, "rebooting into the clone (-r)\n")
            case CopyWay(by):
                r["by"] = by
            case Captured(streams, total, filesystems):
                more = f" in {streams} streams (btrfs: one per subvolume)" if streams > filesystems else ""
                say(args, f"Phase 1: captured {filesystems} filesystem(s){more}, {total} bytes of streams\n")
            case CopyPlanned(targets, plan, by, why, files_known):
                r.update(targets=targets, plan=plan.to_dict(), dry_run=True, by=by, why=why)
                way = f"by files ({why})" if why else "by blocks"
                note = FILES_NOTE if files_known else ""
                say(args, plan.table() + note + f"\nPhase 1 would copy {way}\nnothing was written (--dry-run)\n")


def steps_text(phase: str, actions: list[str]) -> str:
    return f"{phase}:\n" + "".join(f"  {a}\n" for a in actions)


def phase1_text(done: Restored) -> str:
    """What Phase 1 built."""
    lines = [done.plan.table(), ""]
    for d in done.disks:
        used = human(os.stat(d.path).st_blocks * 512) if d.kind == "image" else human(d.size)  # sparse: allocated
        how = "copied the source's blocks onto" if done.by_blocks else "restored onto"
        lines.append(f"{how} {d.path} ({d.kind}, {d.format}, {used} on disk)")
    lines.append("steps: " + ", ".join(f"{k} {v:.0f} s" for k, v in done.timings.items()))
    return "\n".join(lines) + "\n"
