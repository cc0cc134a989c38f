"""Small fakes for the host runner (FakeRunner) and for a clone being worked on (FakeGuest, the Guest interface in
memory; FakeAppliance and FakeAppliances where a step launches its own appliance): they record calls and answer from
canned replies, instead of patching internals by string."""

from __future__ import annotations

import copy
import fnmatch
import inspect
import os
import posixpath
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from imgclone.errors import CommandError, GuestfsError
from imgclone.guest.appliance import Appliance
from imgclone.guest.interface import Guest
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


# -- the Guest interface ---------------------------------------------------------------------------------------------

# Every call of the interface, by name: what FakeGuest and Appliance must both have (tests/test_interface.py)
GUEST_CALLS: dict[str, Callable[..., Any]] = {
    n: getattr(Guest, n) for n in dir(Guest) if not n.startswith("_") and not isinstance(getattr(Guest, n), property)
}
# What the interface tells of a guest rather than asks of it (read-only properties)
GUEST_FACTS = {n for n in dir(Guest) if isinstance(getattr(Guest, n), property)}


class Call(NamedTuple):
    """One recorded call: its keyword arguments are those given, but for None (libguestfs's "not given")."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def _empty_answer(call: Callable[..., Any]) -> Any:
    """The answer to a call no reply is given for: the empty value of its type (None, "", 0, False, b"", [], {})."""
    kind = typing.get_type_hints(call)["return"]
    if kind is type(None):
        return None
    return {} if typing.is_typeddict(kind) else (typing.get_origin(kind) or kind)()


def _given(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


def _none() -> None:
    return None


class FakeGuest:
    """The Guest interface (imgclone/guest/interface.py) in memory, for the steps' tests.

    Every call is recorded in `calls`. The file calls work on `files` (path → bytes), `links` (path → target),
    `dirs` (the parents of every path are directories too), `modes` and `owners`: write then read_file, ls,
    glob_expand, rm_rf, ... behave. mount and mount_ro note what is mounted where (`mounted`), umount_all forgets it.
    Every other call answers from `replies`, else with the empty value of its type.

    A reply (by call name) is a value, an exception to raise, or a callable given the call's arguments. It answers
    a question in place of the files; to a call that changes them it runs first (and may raise) and the change is
    made after. A call the interface does not have is an AttributeError, and one with arguments it would refuse a
    TypeError, as on the real thing."""

    sysroot = "/sysroot"  # an appliance's
    native = False

    def __init__(self, replies: Mapping[str, Any] | None = None, *, files: Mapping[str, bytes | str] | None = None,
                 links: Mapping[str, str] | None = None, dirs: Iterable[str] = ()) -> None:  # fmt: skip
        self.replies: dict[str, Any] = dict(replies or {})
        self.calls: list[Call] = []
        self.files = {p: c.encode() if isinstance(c, str) else c for p, c in (files or {}).items()}
        self.links = dict(links or {})
        self.dirs: set[str] = set()  # the parents of every path are directories too (_parents)
        self.modes: dict[str, int] = {}
        self.owners: dict[str, tuple[int, int]] = {}
        self.mounted: dict[str, str] = {}  # mount point → device, in the order mounted
        for path in (*self.files, *self.links):
            self._parents(path)
        for path in ("/", *dirs):
            self.dirs.add(posixpath.normpath(self._parents(path)))

    # -- reading back what was called

    def names(self) -> list[str]:
        """The names of the calls, in order."""
        return [c.name for c in self.calls]

    def named(self, name: str) -> list[tuple[Any, ...]]:
        """The positional arguments of each call of `name`."""
        return [c.args for c in self.calls if c.name == name]

    def recorded(self, *names: str) -> list[tuple[Any, ...]]:
        """The calls (only those of `names`, if given), each as (name, *args, *sorted keyword items)."""
        return [(c.name, *c.args, *sorted(c.kwargs.items())) for c in self.calls if not names or c.name in names]

    def text(self, path: str) -> str:
        """A file's content as text."""
        return self.files[path].decode()

    # -- how a call is answered

    def _answer(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], otherwise: Callable[[], Any]) -> Any:
        self.calls.append(Call(name, args, kwargs))
        if name not in self.replies:
            return otherwise()
        reply = self.replies[name]
        if isinstance(reply, BaseException):
            raise reply
        if callable(reply):
            return reply(*args, **kwargs)
        return copy.copy(reply)

    # -- the files

    def _resolve(self, path: str) -> str:
        """path with its symlinks followed (a link's relative target is from the link's directory)."""
        for _ in range(40):
            if path not in self.links:
                return path
            path = posixpath.normpath(posixpath.join(posixpath.dirname(path), self.links[path]))
        raise GuestfsError(f"{path}: Too many levels of symbolic links")

    def _parents(self, path: str) -> str:
        """The directories above path made, as they must exist for it; returns path."""
        parent = posixpath.dirname(posixpath.normpath(path))
        while parent not in self.dirs:
            self.dirs.add(parent)
            parent = posixpath.dirname(parent)
        return path

    def _all_paths(self) -> set[str]:
        return set(self.files) | set(self.links) | self.dirs

    def _content(self, call: str, path: str) -> bytes:
        real = self._resolve(path)
        if real not in self.files:
            raise GuestfsError(f"{call}: {path}: No such file or directory")
        return self.files[real]

    def _remove(self, path: str) -> None:
        self.files.pop(path, None)
        self.links.pop(path, None)
        self.modes.pop(path, None)
        self.owners.pop(path, None)

    def read_file(self, path: str) -> bytes:
        return self._answer("read_file", (path,), {}, lambda: self._content("read_file", path))

    def write(self, path: str, content: bytes) -> None:
        self._answer("write", (path, content), {}, _none)
        self.files[self._parents(self._resolve(path))] = bytes(content)

    def upload(self, filename: str, remotefilename: str) -> None:
        self._answer("upload", (filename, remotefilename), {}, _none)
        self.files[self._parents(self._resolve(remotefilename))] = Path(filename).read_bytes()

    def download(self, remotefilename: str, filename: str) -> None:
        self._answer("download", (remotefilename, filename), {}, _none)
        Path(filename).write_bytes(self._content("download", remotefilename))

    def mkdir_p(self, path: str) -> None:
        self._answer("mkdir_p", (path,), {}, _none)
        self.dirs.add(posixpath.normpath(self._parents(path)))

    def touch(self, path: str) -> None:
        self._answer("touch", (path,), {}, _none)
        self.files.setdefault(self._parents(self._resolve(path)), b"")

    def truncate_size(self, path: str, size: int) -> None:
        self._answer("truncate_size", (path, size), {}, _none)
        self.files[self._resolve(path)] = self._content("truncate_size", path)[:size].ljust(size, b"\0")

    def exists(self, path: str) -> bool:
        return self._answer("exists", (path,), {}, lambda: self._resolve(path) in self._all_paths())

    def is_file(self, path: str, *, followsymlinks: bool | None = None) -> bool:
        real = self._resolve(path) if followsymlinks else path
        return self._answer("is_file", (path,), _given(followsymlinks=followsymlinks), lambda: real in self.files)

    def is_dir(self, path: str, *, followsymlinks: bool | None = None) -> bool:
        real = self._resolve(path) if followsymlinks else path
        kwargs = _given(followsymlinks=followsymlinks)
        return self._answer("is_dir", (path,), kwargs, lambda: posixpath.normpath(real) in self.dirs)

    def is_symlink(self, path: str) -> bool:
        return self._answer("is_symlink", (path,), {}, lambda: path in self.links)

    def _below(self, directory: str) -> list[str]:
        """Every path below directory, relative to it, sorted."""
        top = posixpath.normpath(self._resolve(directory))
        if top not in self.dirs:
            raise GuestfsError(f"{directory}: No such file or directory")
        prefix = top.rstrip("/") + "/"
        return sorted(p[len(prefix) :] for p in self._all_paths() if p != top and p.startswith(prefix))

    def ls(self, directory: str) -> list[str]:
        return self._answer("ls", (directory,), {}, lambda: [p for p in self._below(directory) if "/" not in p])

    def find(self, directory: str) -> list[str]:
        # each with a "/" in front, as libguestfs 1.48 gives them (its manual says without)
        return self._answer("find", (directory,), {}, lambda: ["/" + p for p in self._below(directory)])

    def glob_expand(self, pattern: str, *, directoryslash: bool | None = None) -> list[str]:
        def expand() -> list[str]:
            dirs, depth = self.dirs, pattern.count("/")
            found = sorted(p for p in self._all_paths() if p.count("/") == depth and fnmatch.fnmatchcase(p, pattern))
            return [p + "/" if p in dirs and directoryslash is not False else p for p in found]

        return self._answer("glob_expand", (pattern,), _given(directoryslash=directoryslash), expand)

    def readlink(self, path: str) -> str:
        def target() -> str:
            if path not in self.links:
                raise GuestfsError(f"readlink: {path}: Invalid argument")
            return self.links[path]

        return self._answer("readlink", (path,), {}, target)

    def ln(self, target: str, linkname: str) -> None:
        self._answer("ln", (target, linkname), {}, _none)
        self.files[self._parents(linkname)] = self._content("ln", target)

    def ln_s(self, target: str, linkname: str) -> None:
        self._answer("ln_s", (target, linkname), {}, _none)
        if linkname in self._all_paths():
            raise GuestfsError(f"ln_s: {linkname}: File exists")
        self.links[self._parents(linkname)] = target

    def ln_sf(self, target: str, linkname: str) -> None:
        self._answer("ln_sf", (target, linkname), {}, _none)
        self._remove(linkname)
        self.links[self._parents(linkname)] = target

    def rm_f(self, path: str) -> None:
        self._answer("rm_f", (path,), {}, _none)
        self._remove(path)

    def rm_rf(self, path: str) -> None:
        self._answer("rm_rf", (path,), {}, _none)
        top = posixpath.normpath(path)
        below = [p for p in self._all_paths() if p == top or p.startswith(top.rstrip("/") + "/")]
        for p in below:
            self._remove(p)
            self.dirs.discard(p)

    def chmod(self, mode: int, path: str) -> None:
        self._answer("chmod", (mode, path), {}, _none)
        self.modes[path] = mode

    def chown(self, owner: int, group: int, path: str) -> None:
        self._answer("chown", (owner, group, path), {}, _none)
        self.owners[path] = (owner, group)

    # -- the mounts

    def mount(self, mountable: str, mountpoint: str) -> None:
        self._answer("mount", (mountable, mountpoint), {}, _none)
        self.mounted[mountpoint] = mountable

    def mount_ro(self, mountable: str, mountpoint: str) -> None:
        self._answer("mount_ro", (mountable, mountpoint), {}, _none)
        self.mounted[mountpoint] = mountable

    def mount_options(self, options: str, mountable: str, mountpoint: str) -> None:
        self._answer("mount_options", (options, mountable, mountpoint), {}, _none)
        self.mounted[mountpoint] = mountable

    def umount_all(self) -> None:
        self._answer("umount_all", (), {}, _none)
        self.mounted.clear()

    def mounts(self) -> list[str]:
        return self._answer("mounts", (), {}, lambda: list(self.mounted.values()))


def _recorder(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
    """FakeGuest's method for an interface call it has no state for: checks the arguments against the interface's
    signature, records the call and answers from replies (else with the empty value of the call's type)."""
    signature = inspect.signature(call)
    empty = _empty_answer(call)

    def method(self: FakeGuest, *args: Any, **kwargs: Any) -> Any:
        signature.bind(self, *args, **kwargs)
        answer = self._answer(name, args, _given(**kwargs), lambda: copy.copy(empty))
        return None if empty is None else answer  # a call that answers nothing: its reply is only run

    method.__name__, method.__qualname__ = name, f"FakeGuest.{name}"
    method.__signature__ = signature
    method.__doc__ = f"The interface's {name}: recorded, answered from replies[{name!r}], else {empty!r}."
    return method


for _name, _call in GUEST_CALLS.items():
    if _name not in FakeGuest.__dict__:
        setattr(FakeGuest, _name, _recorder(_name, _call))


class FakeAppliance(FakeGuest):
    """A FakeGuest with an Appliance's lifecycle, for a step that makes its own appliance: add_drive (noted in
    `drives` as the path and the options given), launch, close and `with` are recorded too."""

    def __init__(self, trace: bool = False, **guest: Any) -> None:
        super().__init__(**guest)
        self.traced = trace
        self.drives: list[tuple[str, dict[str, Any]]] = []
        self.launched = self.closed = False

    def add_drive(self, path: str, **opts: Any) -> None:
        inspect.signature(Appliance.add_drive).bind(self, path, **opts)  # what the Appliance would refuse
        self._answer("add_drive", (path,), opts, _none)
        self.drives.append((path, opts))

    def launch(self) -> None:
        self._answer("launch", (), {}, _none)
        self.launched = True

    def close(self) -> None:
        self._answer("close", (), {}, _none)
        self.closed = True

    def __enter__(self) -> FakeAppliance:
        self.launch()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeAppliances:
    """Stands for the Appliance class where a step makes its own: each call makes a FakeAppliance (with these
    replies, files, ...), kept in `made`."""

    def __init__(self, **guest: Any) -> None:
        self.guest = guest
        self.made: list[FakeAppliance] = []

    def __call__(self, trace: bool = False) -> FakeAppliance:
        g = FakeAppliance(trace, **self.guest)
        self.made.append(g)
        return g
