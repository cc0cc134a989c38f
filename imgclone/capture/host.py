"""Capture from this host: mounted filesystems, read in place with find, grep and tar."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imgclone.archive.streams import TarMessages, host_stream
from imgclone.capture import excludes, prescan
from imgclone.capture.common import (
    EXCLUDE_ROOTVG,
    CaptureOptions,
    Context,
    first_manifest,
    record_read_error,
    run_capture,
    self_excludes,
)
from imgclone.errors import CommandError
from imgclone.host.run import HOST, PIPE, Pipeline
from imgclone.model import content
from imgclone.model.manifest import Manifest, Source, StreamInfo
from imgclone.model.trees import Tree, trees
from imgclone.probe import bootfacts
from imgclone.probe import host as probe_host

log = logging.getLogger("imgclone")
VIEWS = Path("/run/imgclone")
FIND = ["find", ".", "-xdev", "-printf", content.FIND_PRINTF]  # each name with its type, links and size


def capture_host(opts: CaptureOptions) -> Manifest:
    """Capture the running system (or the filesystems at --mount) into opts.output."""
    sources: list[probe_host.Source] = []

    def prepare(ctx: Context) -> Manifest:
        if opts.mounts:
            ctx.layout, found = probe_host.probe_mounts(opts.mounts)
            kind = "mounts"
        else:
            ctx.layout, found = probe_host.probe_running()
            kind = "running"
        sources.extend(found)
        ctx.rules = host_rules(opts, ctx.workdir)
        boot = bootfacts.boot_facts_host()
        source = Source(kind, host=os.uname().nodename, mounts=tuple(s.mountpoint for s in found))
        prescan = {s.fs_id: prescan_fs(s.mountpoint, ctx.rules, ctx.workdir) for s in found} if opts.prescan else None
        return first_manifest(ctx, source, boot, probe_host.used_inodes(found), prescan)

    def stream_all(ctx: Context) -> None:
        by_id = {s.fs_id: s for s in sources}
        for tree in trees(ctx.layout, snapshots=opts.snapshots):
            src = by_id.get(tree.fs.id)
            if src is not None:
                with tree_view(tree, src.mountpoint) as view:
                    ctx.streams.append(stream_tree(ctx, tree, view))

    return run_capture(opts, prepare, stream_all)


def host_rules(opts: CaptureOptions, workdir: Path) -> excludes.ExcludeRules:
    """This host's /etc/exclude.rootvg plus -e, and the capture's own files (the archive, the workdir)."""
    lists = [opts.exclude_list] if opts.exclude_list else []
    return excludes.load_rules(
        [EXCLUDE_ROOTVG, *lists], extra=self_excludes(opts, workdir), missing_ok=[EXCLUDE_ROOTVG]
    )


@contextmanager
def read_only_view(mountpoint: str) -> Iterator[str]:
    """A read-only bind mount of the filesystem at mountpoint, showing only its own files.

    Reading through it, the directories that other filesystems are mounted on (/proc, /boot)
    are archived as they are on this filesystem, not as the mounted filesystem's root, and
    live pseudo filesystems never show up as "file changed as we read it". It lives under
    /run, outside any scratch directory that is removed recursively, and is only rmdir'ed.
    """
    with _view(["mount", "--bind", mountpoint], ["mount", "-o", "remount,bind,ro"]) as view:
        yield view


@contextmanager
def tree_view(tree: Tree, mountpoint: str) -> Iterator[str]:
    """A read-only view of one tree: a filesystem's (read_only_view), or on a btrfs with subvolumes one
    subvolume or the top level, mounted read-only from the device of the btrfs at mountpoint (a subvolume that is
    not mounted, or the top level under a mounted @, shows nowhere else)."""
    if not (tree.subvol or tree.top_level):  # a filesystem's own tree, a btrfs without subvolumes too
        with read_only_view(mountpoint) as view:
            yield view
        return
    device = os.fsdecode(HOST.run(["findmnt", "-nvo", "SOURCE", "--mountpoint", mountpoint]).stdout.strip())
    with _view(["mount", "-o", f"ro,{tree.mount_options}", device]) as view:
        yield view


@contextmanager
def _view(mount: list[str], then: list[str] | None = None) -> Iterator[str]:
    """A directory under VIEWS with `mount` (and then `then`) on it; unmounted and removed after."""
    VIEWS.mkdir(parents=True, exist_ok=True)
    view = tempfile.mkdtemp(prefix="view-", dir=VIEWS)
    try:
        HOST.run([*mount, view])
    except BaseException:
        os.rmdir(view)
        raise
    try:
        if then is not None:
            HOST.run([*then, view])
        yield view
    finally:
        res = HOST.run(["umount", view], check=False)
        if res.returncode == 0:
            os.rmdir(view)
        else:
            log.error("could not unmount %s (%s); remove it by hand with: umount %s", view, res.stderr.strip(), view)


def prescan_fs(mountpoint: str, rules: excludes.ExcludeRules, workdir: Path) -> content.ContentFacts:
    """The filesystem's files near a type's limits that the rules keep (capture/prescan.py), read through its view."""
    with read_only_view(mountpoint) as view:
        res = HOST.run(prescan.find_argv(view), check=False)
    if res.returncode not in (0, 1):  # 1: some directory vanished or was unreadable, as in list_names
        raise CommandError(["find", mountpoint], res.returncode, res.stderr)
    return prescan.facts(res.stdout, mountpoint, rules, workdir)


def list_names(directory: str, out: Path) -> None:
    """One filesystem's fs-relative names, parents first (find -xdev), as content.FIND_PRINTF records."""
    with (
        open(out, "wb") as f,
        Pipeline([FIND], stdout=f, stderr=None, cwd=directory) as p,
    ):
        pass
    rc = p.procs[0].returncode
    if rc not in (0, 1):  # 1: some directory vanished or was unreadable; tar reports those files
        raise CommandError(["find", directory], rc)


def stream_tree(ctx: Context, tree: Tree, directory: str) -> StreamInfo:
    """Archive one tree (a mounted filesystem, a btrfs subvolume) read at directory: list, select by the rules,
    tar | zstd into the archive. A tree that shows nowhere in the system gets no rules; the subvolumes nested in
    it are left out (find -xdev lists their directories, not what is in them).

    When every rule is an exact path (the archive and the workdir, as a rule), find's names go
    through the rules straight into tar, which starts at once: reading the metadata overlaps
    with reading and compressing the data, as in a plain `tar -c | zstd`. Other rules need grep
    over the whole list first (one pass of find before tar).
    """
    prefix = excludes.tree_prefix(tree.shown_at or "/")
    rules = ctx.rules if tree.shown_at else excludes.ExcludeRules()
    nested = [os.fsencode("./" + n) for n in tree.nested]
    literal = excludes.literal_paths(rules)
    if literal is not None:
        literal = literal | {excludes.system_name(n, prefix) for n in nested}
    kept = ctx.workdir / f"{tree.id}.kept"
    sel: excludes.Selection | None = None
    scan = content.NameScan(tree.shown_at or "/")
    if literal is None:
        names = ctx.workdir / f"{tree.id}.names"
        list_names(directory, names)
        sel = excludes.select(names, kept, rules, prefix=prefix, scan=scan, also=nested)
        names.unlink()
    bar = ctx.bar
    msgs = TarMessages(verbose=ctx.opts.verbose, on_progress=bar.update, on_line=ctx.note)
    feeder: NameFeeder | None = None
    with host_stream(directory, "-" if literal is not None else kept, msgs, ctx.opts.level) as pipe:
        if ctx.opts.err_mode.value == "fail":
            msgs.fail_fast = pipe.kill
        if literal is not None:
            feeder = NameFeeder(directory, literal, prefix, pipe, scan)
        tar, zstd = pipe.procs
        assert tar.stderr is not None and zstd.stderr is not None
        pump = msgs.pump(tar.stderr)
        try:
            member, parts, size, sha = ctx.writer.add_stream(tree.id, pipe.out)
        except BaseException:
            pipe.kill()  # first: the feeder may be blocked writing to tar
            raise
        finally:
            if feeder is not None:
                feeder.join()
        pump.join()
        zerr = zstd.stderr.read().decode(errors="replace")
    if feeder is not None:
        sel = feeder.result()
    assert sel is not None
    for line in msgs.read_errors:
        record_read_error(ctx, line)
    if msgs.other_errors or zstd.returncode != 0 or tar.returncode not in (0, 1, 2):
        raise CommandError(["tar" if msgs.other_errors else "zstd"], tar.returncode or zstd.returncode,
                           "\n".join(msgs.other_errors) or zerr)  # fmt: skip
    if tar.returncode == 2 and not msgs.read_errors:
        raise CommandError(pipe.stages[0], 2, "tar failed")
    log.debug(
        "%s: %d names kept, %d excluded, %d bytes in %d part(s)",
        tree.id,
        sel.kept,
        len(sel.excluded),
        size,
        parts,
    )
    facts = scan.facts()
    return StreamInfo(fs=tree.fs.id, mountpoint=tree.shown_at, member=member, parts=parts, bytes=size, sha256=sha,
                      files=sel.kept, data_bytes=msgs.total, content=facts,
                      subvolume=tree.subvol and tree.id)  # fmt: skip


class _TarStopped(Exception):
    """tar stopped reading its names (it failed, or was killed under ALT_BAK_ERR_FAIL)."""


class NameFeeder:
    """A thread: find's names in directory, through the exact-path rules, into tar's stdin; scan sees them."""

    def __init__(self, directory: str, literal: frozenset[bytes], prefix: bytes, tar: Pipeline,
                 scan: content.NameScan) -> None:  # fmt: skip
        self._args = (directory, literal, prefix, tar)
        self._scan = scan
        self._sel: excludes.Selection | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        directory, literal, prefix, tar = self._args

        def write(name: bytes) -> None:
            if not tar.write(name):
                raise _TarStopped

        try:
            with Pipeline([FIND], stdout=PIPE, stderr=None, cwd=directory) as find:
                names = self._scan.names(excludes.split_names(find.out))
                self._sel = excludes.select_stream(names, literal, self._scan.keeping(write), prefix=prefix)
            rc = find.procs[0].returncode
            if rc not in (0, 1):  # 1: some directory vanished or was unreadable; tar reports those files
                raise CommandError(["find", directory], rc)
        except _TarStopped:
            pass  # tar's exit status and messages say why
        except BaseException as e:  # noqa: BLE001 - handed to the capture's thread by result()
            self._error = e
        finally:
            tar.close_input()

    def join(self) -> None:
        self._thread.join()

    def result(self) -> excludes.Selection:
        """What was selected; raises what went wrong in the thread."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._sel or excludes.Selection(0, ())
