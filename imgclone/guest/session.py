"""The appliance of one command's phases: a Session launches it once and lends it to each phase.

Drives are added with labels (targeta, targetb, ...: letters only), so commands run in the appliance name
/dev/disk/guestfs/targeta whatever order its kernel enumerated them in.

One command that runs several phases (restore, copy) runs them in one appliance: the first phase launches it,
the next ones take it over, since their drives are the same targets. Under TCG a launch and shutdown cost
20–30 s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from imgclone.guest.appliance import Appliance
from imgclone.guest.interface import Guest

Drive = tuple[str, str]  # a target's path and format (raw, qcow2)


def disk_label(index: int) -> str:
    """targeta, targetb, ... (libguestfs labels are letters only)."""
    return "target" + chr(ord("a") + index)


def disk_path(index: int) -> str:
    """The path of target `index` for a program run in the appliance (its kernel may order the disks otherwise)."""
    return f"/dev/disk/guestfs/{disk_label(index)}"


class Session:
    """use() gives the running appliance when it holds exactly the drives asked for, else launches a new one; a
    phase that fails closes it (what it left mounted or active is not for the next phase). The command closes it
    at its end (a context manager)."""

    def __init__(self, *, debug: bool = False) -> None:
        self.debug = debug
        self._g: Appliance | None = None
        self._drives: tuple[Drive, ...] = ()

    @contextlib.contextmanager
    def use(self, targets: Sequence[Drive], *, discard: bool = False) -> Iterator[Guest]:
        """discard: a launch adds the drives so that fstrim frees their blocks (copy/blocks.py)."""
        wanted = tuple(targets)
        if self._g is None or self._drives != wanted:
            self.close()
            g = Appliance(trace=self.debug)
            for i, (path, fmt) in enumerate(wanted):
                g.add_drive(
                    path, readonly=False, format=fmt, label=disk_label(i), **({"discard": True} if discard else {})
                )
            g.launch()
            self._g, self._drives = g, wanted
        try:
            yield self._g
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        g, self._g = self._g, None
        if g is not None:
            g.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def opened(targets: Sequence[Drive], shared: Session | None, *, debug: bool = False, discard: bool = False
           ) -> Iterator[Guest]:  # fmt: skip
    """An appliance with the targets as writable, labelled drives: the shared one, or one of this phase's own."""
    with contextlib.nullcontext(shared) if shared is not None else Session(debug=debug) as session:
        with session.use(targets, discard=discard) as g:
            yield g
