"""The clone of one command's phases: a Session opens it once (on this host, or in a libguestfs appliance) and
lends it to each phase.

Where it is opened is decided once per command (guest/via.py's choose: `--via host|appliance|auto`), from the
targets and the layout Phase 1 builds (or the journal's, for Phase 2 or 3 alone); `told` hears the choice.

In the appliance, drives are added with labels (targeta, targetb, ...: letters only), so commands run there name
/dev/disk/guestfs/targeta whatever order its kernel enumerated them in.

One command that runs several phases (restore, copy) runs them on one opened clone: the first phase opens it,
the next ones take it over, since their drives are the same targets. Under TCG an appliance's launch and
shutdown cost 20–30 s.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence

from imgclone.guest import via
from imgclone.guest.appliance import Appliance
from imgclone.guest.interface import Guest
from imgclone.guest.onhost import HostGuest
from imgclone.model.layout import Layout

log = logging.getLogger("imgclone")

Drive = tuple[str, str]  # a target's path and format (raw, qcow2)


def disk_label(index: int) -> str:
    """targeta, targetb, ... (libguestfs labels are letters only)."""
    return "target" + chr(ord("a") + index)


class Session:
    """use() gives the opened clone when it holds exactly the drives asked for, else opens a new one; a phase that
    fails closes it (what it left mounted or active is not for the next phase). The command closes it at its end
    (a context manager)."""

    def __init__(self, *, debug: bool = False, via_asked: str = "auto",
                 told: Callable[[via.Choice], None] | None = None) -> None:  # fmt: skip
        self.debug = debug
        self.via_asked = via_asked
        self.choice: via.Choice | None = None
        self._told = told
        self._g: Appliance | HostGuest | None = None
        self._drives: tuple[Drive, ...] = ()

    def decide(self, drives: Sequence[via.Drive], layout: Layout) -> via.Choice:
        """Where this command's phases work (once: later calls give the same); a refused --via host raises."""
        if self.choice is None:
            types, tools, _ = via.needs(layout)
            self.choice = via.choose(self.via_asked, drives, layout, via.abilities(types, tools))
            log.debug("via %s: %s", self.choice.via, self.choice.reason)
            if self._told is not None:
                self._told(self.choice)
        return self.choice

    @contextlib.contextmanager
    def use(self, targets: Sequence[Drive], *, layout: Layout | None = None, discard: bool = False
            ) -> Iterator[Guest]:  # fmt: skip
        """layout: what the phase works on (to decide where, when not decided yet; without it, the appliance).
        discard: an appliance adds the drives so that fstrim frees their blocks (copy/blocks.py)."""
        wanted = tuple(targets)
        if self._g is None or self._drives != wanted:
            self.close()
            if self.choice is None and layout is not None:
                self.decide(via.drives_of(wanted), layout)
            self._g = self._open(wanted, discard)
            self._drives = wanted
        try:
            yield self._g
        except BaseException:
            self.close()
            raise

    def _open(self, wanted: tuple[Drive, ...], discard: bool) -> Appliance | HostGuest:
        if self.choice is not None and self.choice.via == "host":
            guest = HostGuest(wanted)
            try:
                guest.launch()
            except BaseException:
                guest.close()
                raise
            return guest
        g = Appliance(trace=self.debug)
        for i, (path, fmt) in enumerate(wanted):
            g.add_drive(path, readonly=False, format=fmt, label=disk_label(i), **({"discard": True} if discard else {}))
        g.launch()
        return g

    def close(self) -> None:
        g, self._g = self._g, None
        if g is not None:
            g.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def opened(targets: Sequence[Drive], shared: Session | None, *, layout: Layout | None = None, debug: bool = False,
           discard: bool = False) -> Iterator[Guest]:  # fmt: skip
    """The targets opened as a clone to work on: by the shared session, or by one of this phase's own."""
    with contextlib.nullcontext(shared) if shared is not None else Session(debug=debug) as session:
        with session.use(targets, layout=layout, discard=discard) as g:
            yield g
