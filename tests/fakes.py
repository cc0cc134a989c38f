"""Small fakes for the host runner and the libguestfs handle: they record calls and
answer from canned replies, instead of patching internals by string."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from imgclone.errors import CommandError
from imgclone.host.run import Argv, Result

Reply = Result | Callable[[list[str], bytes | None], Result]


class FakeRunner:
    """Answers run() from `replies`, keyed by an argv prefix (the longest matching prefix wins)."""

    def __init__(self, replies: Mapping[tuple[str, ...], str | bytes | Reply] | None = None) -> None:
        self.replies: dict[tuple[str, ...], Any] = dict(replies or {})
        self.calls: list[list[str]] = []

    def add(self, prefix: tuple[str, ...], reply: str | bytes | Reply) -> None:
        self.replies[prefix] = reply

    def run(
        self,
        argv: Argv,
        *,
        input: bytes | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Result:
        args = [os.fspath(a) for a in argv]
        self.calls.append(args)
        matches = [p for p in self.replies if tuple(args[: len(p)]) == p]
        if not matches:
            raise AssertionError(f"FakeRunner: unexpected command {args}")
        reply = self.replies[max(matches, key=len)]
        if callable(reply):
            res = reply(args, input)
        elif isinstance(reply, Result):
            res = reply
        else:
            out = reply.encode() if isinstance(reply, str) else reply
            res = Result(args, 0, out, "")
        if check and res.returncode != 0:
            raise CommandError(args, res.returncode, res.stderr)
        return res


def fail(rc: int, stderr: str = "") -> Callable[[list[str], bytes | None], Result]:
    """A reply that exits with rc."""
    return lambda argv, _input: Result(argv, rc, b"", stderr)
