"""Capture from an offline disk image or unmounted block device, through libguestfs.

The image is opened read-only in one appliance and never mounted on the host: its
filesystems are parsed by the appliance's kernel only, so an untrusted image cannot reach
the host kernel. Each filesystem is mounted alone (so a stream never crosses into another
filesystem), listed with find0, selected by the exclude rules on the host, and streamed
out with tar_out through a pipe into zstd on the host.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import IO

from imgclone.archive.streams import zstd_compress
from imgclone.capture import excludes, prescan
from imgclone.capture.common import (
    EXCLUDE_ROOTVG,
    CaptureOptions,
    Context,
    check_options,
    first_manifest,
    run_capture,
)
from imgclone.errors import ImgcloneError
from imgclone.guest.appliance import Appliance
from imgclone.guest.interface import Guest
from imgclone.guest.treemount import mount_tree
from imgclone.host.images import image_format
from imgclone.host.run import PIPE, Pipeline
from imgclone.model import content
from imgclone.model.layout import Layout
from imgclone.model.manifest import Manifest, Source, StreamInfo
from imgclone.model.trees import Tree, trees
from imgclone.probe import bootfacts
from imgclone.probe import guest as probe_guest

log = logging.getLogger("imgclone")
RELAY_CHUNK = 1 << 20


def capture_offline(opts: CaptureOptions) -> Manifest:
    """Capture the filesystems of the OS found in opts.source into opts.output."""
    assert opts.source is not None
    check_options(opts)  # usage errors first, before looking at the image
    source = os.path.abspath(opts.source)
    fmt = image_format(source)
    g = Appliance(trace=opts.debug)
    g.add_drive(source, readonly=True, format=fmt)
    devices: dict[str, str] = {}

    def prepare(ctx: Context) -> Manifest:
        g.launch()
        ctx.layout, found = probe_guest.probe_image(g, [source])
        devices.update({s.fs_id: s.device for s in found})
        probe_guest.mount_sources(g, found)
        inodes = probe_guest.used_inodes(g, found)
        ctx.rules = read_rules(g, ctx.workdir, opts)
        boot = bootfacts.boot_facts_guest(g, ctx.layout)
        g.umount_all()
        prescan = prescan_all(g, ctx.layout, devices, ctx.rules, ctx.workdir) if opts.prescan else None
        return first_manifest(ctx, Source("image", path=source, format=fmt), boot, inodes, prescan)

    def stream_all(ctx: Context) -> None:
        for tree in trees(ctx.layout, snapshots=opts.snapshots):
            if tree.fs.id in devices:
                ctx.streams.append(stream_tree(g, ctx, tree, devices[tree.fs.id]))

    try:
        return run_capture(opts, prepare, stream_all)
    finally:
        g.close()


def read_rules(g: Guest, workdir: Path, opts: CaptureOptions) -> excludes.ExcludeRules:
    """The image's own /etc/exclude.rootvg plus -e, as AIX says (the image's root mounted at /)."""
    lists: list[str] = []
    if g.is_file(EXCLUDE_ROOTVG, followsymlinks=False):
        local = workdir / "image-exclude.rootvg"
        g.download(EXCLUDE_ROOTVG, str(local))
        lists.append(str(local))
        log.info("using the image's %s", EXCLUDE_ROOTVG)
    if opts.exclude_list:
        lists.append(opts.exclude_list)
    rules = excludes.load_rules(lists)
    # name the image's list as the user knows it, not by our scratch copy
    named = tuple(f"{opts.source}:{EXCLUDE_ROOTVG}" if s.startswith(str(workdir)) else s for s in rules.sources)
    return dataclasses.replace(rules, sources=named)


PRESCAN_DIR = "/tmp/imgclone-prescan"  # in the appliance's own root, which is writable
PRESCAN_CHUNK = 1 << 20  # bytes of records per `debug sh` answer (base64: 1.4 MB; libguestfs's limit is 4 MB)


def prescan_fs(g: Guest, mountpoint: str, device: str, rules: excludes.ExcludeRules, workdir: Path
               ) -> content.ContentFacts:  # fmt: skip
    """One filesystem, mounted alone: its files near a type's limits that the rules keep (capture/prescan.py). find
    writes its NUL-terminated records into the appliance's /tmp; they come out as base64 text (`debug sh` returns
    text), in chunks small enough for one answer each (a file with thousands of links has a record for each name)."""
    g.umount_all()
    g.mount_ro(device, "/")
    g.appliance_command(["rm", "-rf", PRESCAN_DIR])
    g.appliance_command(["mkdir", PRESCAN_DIR])
    g.appliance_command(prescan.find_argv(g.sysroot, to=f"{PRESCAN_DIR}/records"))
    g.appliance_command(["split", "-b", str(PRESCAN_CHUNK), "-a", "6", "-d", f"{PRESCAN_DIR}/records",
                         f"{PRESCAN_DIR}/part."])  # fmt: skip
    parts = sorted(g.appliance_command(["find", PRESCAN_DIR, "-name", "part.*"]).split())
    records = b"".join(base64.b64decode(g.appliance_command(["base64", "-w0", part])) for part in parts)
    g.umount_all()
    return prescan.facts(records, mountpoint, rules, workdir)


def prescan_all(g: Guest, layout: Layout, devices: dict[str, str], rules: excludes.ExcludeRules, workdir: Path
                ) -> dict[str, content.ContentFacts]:  # fmt: skip
    """prescan_fs of every filesystem (fs id → its device in the appliance)."""
    at = {fs.id: fs.mountpoint for fs in layout.filesystems}
    return {i: prescan_fs(g, at[i], dev, rules, workdir) for i, dev in devices.items()}


def glob_escape(name: bytes) -> str:
    """A tar --exclude pattern that matches exactly `name` (tar_out excludes are globs)."""
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ImgcloneError(f"cannot exclude {name!r} from an image: the name is not UTF-8") from e
    return "".join("\\" + c if c in "\\*?[" else c for c in text)


def write_names(find0: Path, out: Path) -> None:
    """find0's names ("a", "a/b") as find . -print0 writes them (".", "./a", "./a/b")."""
    with open(out, "wb") as dst:
        dst.write(b".\0")
        for name in excludes.read_names(find0):
            if name:
                dst.write(b"./" + name + b"\0")


def select_names(g: Guest, tree: Tree, rules: excludes.ExcludeRules, kept: Path) -> excludes.Selection:
    """The names of a tree, mounted alone at / in the appliance, through the exclude rules as a capture selects
    them (a tree that shows nowhere in the system, none), its nested subvolumes left out: the kept ones
    NUL-terminated in kept; the top-most excluded ones returned. The copy by blocks removes those."""
    listed = kept.with_suffix(".find0")
    g.find0("/", str(listed))
    write_names(listed, kept.with_suffix(".names"))
    return excludes.select(kept.with_suffix(".names"), kept, rules if tree.shown_at else excludes.ExcludeRules(),
                           prefix=excludes.tree_prefix(tree.shown_at or "/"),
                           also=[os.fsencode("./" + n) for n in tree.nested])  # fmt: skip


def stream_tree(g: Guest, ctx: Context, tree: Tree, device: str) -> StreamInfo:
    """Mount one tree (a filesystem, or one btrfs subvolume) alone at / in the appliance and stream it into the
    archive."""
    g.umount_all()
    mount_tree(g, tree, device, "/", readonly=True)
    kept = ctx.workdir / f"{tree.id}.kept"
    sel = select_names(g, tree, ctx.rules, kept)
    patterns = [glob_escape(n) for n in sel.excluded]
    if ctx.opts.verbose:
        list_kept(ctx, kept)
    r, w = os.pipe()
    failure: list[BaseException] = []
    counted = [0]
    scan = content.TarScan(tree.shown_at or "/")

    def produce() -> None:
        try:
            g.tar_out(
                "/",
                f"/dev/fd/{w}",
                numericowner=True,
                xattrs=True,
                selinux=True,
                acls=True,
                excludes=patterns,
            )
        except BaseException as e:  # noqa: B036 - handed to the main thread
            failure.append(e)
        finally:
            os.close(w)

    with Pipeline([zstd_compress(ctx.opts.level)], stdin=PIPE, stderr=PIPE) as pipe:
        zin = pipe.procs[0].stdin
        assert zin is not None
        producer = threading.Thread(target=produce, daemon=True)
        relay = threading.Thread(target=_relay, args=(r, zin, ctx, counted, scan), daemon=True)
        producer.start()
        relay.start()
        member, parts, size, sha = ctx.writer.add_stream(tree.id, pipe.out)
        producer.join()
        relay.join()
    g.umount_all()
    if failure:
        raise failure[0]
    pipe.check()
    facts = scan.facts()
    return StreamInfo(fs=tree.fs.id, mountpoint=tree.shown_at, member=member, parts=parts, bytes=size, sha256=sha,
                      files=sel.kept, data_bytes=counted[0], content=facts,
                      subvolume=tree.subvol and tree.id)  # fmt: skip


def _relay(r: int, zin: IO[bytes], ctx: Context, counted: list[int], scan: content.TarScan) -> None:
    """Copy the appliance's tar stream into zstd, counting bytes for the progress bar; scan reads its headers."""
    with os.fdopen(r, "rb", buffering=0) as src:
        try:
            with zin:
                while chunk := src.read(RELAY_CHUNK):
                    zin.write(chunk)
                    scan.feed(chunk)
                    counted[0] += len(chunk)
                    ctx.bar.update(len(chunk))
        except BrokenPipeError:
            pass  # zstd was stopped (the reader went away): the writer's error says why; closing src ends tar_out


def list_kept(ctx: Context, kept: Path) -> None:
    """-V: name each file the stream will hold (tar_out itself lists nothing)."""
    for name in excludes.read_names(kept):
        ctx.note(name.decode("utf-8", "backslashreplace").replace("\n", "\\n"))
