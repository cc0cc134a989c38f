"""The only place that spawns processes: run() for one command, Pipeline for streams.

Every command is traced as `+ argv` at debug level (-D), runs with a C locale so that
tools' messages and byte handling are predictable, and is logged once when it fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Protocol

from imgclone.errors import CommandError

log = logging.getLogger("imgclone")

Argv = Sequence[str | os.PathLike[str]]
PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "surrogateescape")


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env["LC_ALL"] = "C.UTF-8"
    env.pop("LANGUAGE", None)
    if extra:
        env.update(extra)
    return env


def _argv(argv: Argv) -> list[str]:
    return [os.fspath(a) for a in argv]


class Runner(Protocol):
    """What steps need from the host; tests pass a fake that records calls."""

    def run(
        self,
        argv: Argv,
        *,
        input: bytes | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Result: ...


class HostRunner:
    """Runs commands on this host."""

    def run(
        self,
        argv: Argv,
        *,
        input: bytes | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Result:
        args = _argv(argv)
        log.debug("+ %s", shlex.join(args))
        try:
            cp = subprocess.run(
                args, input=input, stdout=PIPE, stderr=PIPE, env=_env(env), timeout=timeout, check=False
            )
        except FileNotFoundError as e:
            raise CommandError(args, 127, f"{args[0]}: command not found (run `make setup`)") from e
        except subprocess.TimeoutExpired as e:
            raise CommandError(args, 124, f"timed out after {timeout:g} s") from e
        res = Result(args, cp.returncode, cp.stdout, cp.stderr.decode("utf-8", "replace"))
        if check and cp.returncode != 0:
            raise CommandError(args, cp.returncode, res.stderr)
        return res


HOST: Runner = HostRunner()


def set_pipe_size(fd: int, size: int) -> None:
    """Make a pipe hold `size` bytes (Linux F_SETPIPE_SZ) instead of 64 KiB: a writer that works between its
    writes (hashing, reading a file) then keeps the reader busy. Best effort: a smaller pipe only costs wake-ups."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)


@dataclass
class Pipeline:
    """Processes connected stdout→stdin; the last one's stdout is readable by the caller.

    Use as a context manager: on exit every process is waited for (or killed when the
    block raised), so no child outlives the step that started it.
    """

    stages: list[list[str]]
    stdin: int | IO[bytes] | None = None
    stdout: int | IO[bytes] | None = PIPE
    stderr: int | IO[bytes] | None = PIPE
    cwd: str | None = None
    env: Mapping[str, str] | None = None
    pipe_size: int | None = None  # bytes each pipe this pipeline makes holds (set_pipe_size); None: the kernel's
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __enter__(self) -> Pipeline:
        prev: int | IO[bytes] | None = self.stdin
        for i, argv in enumerate(self.stages):
            last = i == len(self.stages) - 1
            log.debug("+ %s%s", "| " if i else "", shlex.join(argv))
            try:
                p = subprocess.Popen(
                    argv,
                    stdin=prev,
                    stdout=self.stdout if last else PIPE,
                    stderr=self.stderr,
                    cwd=self.cwd,
                    env=_env(self.env),
                )
            except FileNotFoundError as e:
                self.kill()
                raise CommandError(argv, 127, f"{argv[0]}: command not found (run `make setup`)") from e
            if self.procs and self.procs[-1].stdout is not None:
                # the parent's copy would keep the pipe open after the child exits
                self.procs[-1].stdout.close()
            if self.pipe_size:
                for pipe in (p.stdin if i == 0 else None, p.stdout):
                    if pipe is not None:
                        set_pipe_size(pipe.fileno(), self.pipe_size)
            self.procs.append(p)
            prev = p.stdout
        return self

    @property
    def out(self) -> IO[bytes]:
        out = self.procs[-1].stdout
        assert out is not None, "pipeline stdout is not a pipe"
        return out

    @property
    def input(self) -> IO[bytes]:
        """The first stage's stdin (the pipeline was made with stdin=PIPE)."""
        inp = self.procs[0].stdin
        assert inp is not None, "pipeline stdin is not a pipe"
        return inp

    def write(self, data: bytes | memoryview) -> bool:
        """Feed the first stage; False once it has stopped reading (its exit code and stderr say why)."""
        try:
            self.input.write(data)
        except BrokenPipeError:
            return False
        return True

    def close_input(self) -> None:
        """End the first stage's input; a stage that already exited is reported by its exit code, not here."""
        try:
            self.input.close()
        except BrokenPipeError:
            pass

    def stderr_text(self, stage: int = 0) -> str:
        """What a stage wrote to stderr (read to the end: call after wait()); "" when it is not a pipe."""
        err = self.procs[stage].stderr
        return err.read().decode(errors="replace") if err is not None else ""

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()

    def wait(self) -> list[int]:
        """Wait for all stages and return their exit codes, first to last."""
        return [p.wait() for p in self.procs]

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.kill()
        else:
            self.wait()
        for p in self.procs:
            for f in (p.stdout, p.stderr):
                if f is not None:
                    f.close()

    def check(self, tolerated: Mapping[int, set[int]] | None = None) -> None:
        """Raise CommandError for the first stage that failed (rc not 0 nor tolerated)."""
        for i, p in enumerate(self.procs):
            rc = p.wait()
            if rc != 0 and rc not in (tolerated or {}).get(i, set()):
                raise CommandError(self.stages[i], rc, "")
