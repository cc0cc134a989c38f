"""What the commands print: JSON with --json, else text that says what was done."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any


def emit(args: argparse.Namespace, data: Any, text: Callable[[], str]) -> None:
    """Print JSON with --json, else the human text."""
    if args.json:
        json.dump(data, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(text())


def say(args: argparse.Namespace, text: str) -> None:
    """Human output as each part of a long command ends (with --json, one document at the end instead)."""
    if not args.json:
        sys.stdout.write(text)
        sys.stdout.flush()


def print_result(args: argparse.Namespace, result: dict[str, Any], rc: int = 0) -> int:
    """The gathered result as JSON (with --json; the text went out as each part ended); returns rc."""
    if args.json:
        json.dump(result, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    return rc
