"""Pipeline's stdin helpers against real short-lived processes (no root, no appliance)."""

from __future__ import annotations

from imgclone.host.run import PIPE, Pipeline

BIG = b"x" * (1 << 20)  # larger than the stdin buffer: the write reaches the pipe at once


def test_write_close_wait_reads_output() -> None:
    with Pipeline([["cat"], ["tr", "a-z", "A-Z"]], stdin=PIPE) as p:
        assert p.write(b"hello ")
        assert p.write(b"world\n")
        p.close_input()
        out = p.out.read()
        assert p.wait() == [0, 0]
    assert out == b"HELLO WORLD\n"


def test_write_to_a_stage_that_exited_is_false_not_an_error() -> None:
    with Pipeline([["sh", "-c", "echo gave up >&2; exit 3"]], stdin=PIPE, stdout=None) as p:
        p.procs[0].wait()
        assert not p.write(BIG)
        p.close_input()
        assert p.wait() == [3]
        assert p.stderr_text() == "gave up\n"


def test_close_input_with_unflushed_data_after_exit() -> None:
    with Pipeline([["true"]], stdin=PIPE, stdout=None) as p:
        p.procs[0].wait()
        assert p.write(b"small")  # only buffered: the broken pipe shows when closing
        p.close_input()
        assert p.wait() == [0]


def test_stderr_text_per_stage() -> None:
    argv = [["sh", "-c", "cat; echo first >&2"], ["sh", "-c", "cat >/dev/null; echo second >&2; exit 1"]]
    with Pipeline(argv, stdin=PIPE) as p:
        p.close_input()
        assert p.wait() == [0, 1]
        assert [p.stderr_text(i) for i in range(2)] == ["first\n", "second\n"]


def test_stderr_text_is_empty_when_not_a_pipe() -> None:
    with Pipeline([["true"]], stdin=PIPE, stdout=None, stderr=None) as p:
        p.close_input()
        assert p.wait() == [0]
        assert p.stderr_text() == ""


def test_pipe_size_applies_to_every_pipe_the_pipeline_makes() -> None:
    import fcntl

    with Pipeline([["cat"], ["cat"]], stdin=PIPE, pipe_size=1 << 20) as p:
        sizes = [fcntl.fcntl(p.input.fileno(), fcntl.F_GETPIPE_SZ), fcntl.fcntl(p.out.fileno(), fcntl.F_GETPIPE_SZ)]
        p.close_input()
        assert p.wait() == [0, 0]
    assert sizes == [1 << 20, 1 << 20]
    with Pipeline([["cat"]], stdin=PIPE) as q:
        assert fcntl.fcntl(q.input.fileno(), fcntl.F_GETPIPE_SZ) == 65536  # the kernel's default
        q.close_input()
        q.wait()
