"""Phase 2 packages: what to install from the -l directory (AIX's installp images).

-w names packages to install, -b a file listing them (a bundle), -F names updates to
apply (the APAR analog) and -f a file listing those; `update_all` (in -b, -F or -f)
means every package in the directory newer than the one installed in the clone. Debian
packages are read with dpkg-deb on the host, so a missing package is refused before the
clone is opened; RPMs are named by the usual NAME-VERSION-RELEASE.ARCH.rpm file names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from imgclone.errors import UsageError
from imgclone.host.run import HOST, Runner

UPDATE_ALL = "update_all"
_RPM = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+-[^-]+)\.(?P<arch>[^.]+)\.rpm$")


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    path: Path
    kind: str  # "deb" or "rpm"


@dataclass(frozen=True)
class Request:
    """-l DIR with -w/-b (install) and -F/-f (updates); flags from -I."""

    directory: Path
    install: tuple[str, ...] = ()
    fixes: tuple[str, ...] = ()
    update_all: bool = False
    flags: tuple[str, ...] = ()


def read_list(path: str, flag: str) -> list[str]:
    """A bundle or fix file: names separated by blanks or lines; # starts a comment."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"{flag} {path}: {e.strerror}") from e
    names = [w for line in text.splitlines() for w in line.split("#", 1)[0].split()]
    if not names:
        raise UsageError(f"{flag} {path}: lists no package", "one package name per line")
    return names


def make_request(
    directory: str,
    *,
    install: Iterable[str] = (),
    bundle: str | None = None,
    fixes: Iterable[str] = (),
    fix_file: str | None = None,
    flags: Iterable[str] = (),
) -> Request:
    """The -l/-w/-b/-F/-f/-I flags as one request; the lists may say update_all."""
    names = list(install) + (read_list(bundle, "-b") if bundle else [])
    fix_names = list(fixes) + (read_list(fix_file, "-f") if fix_file else [])
    update_all = UPDATE_ALL in names or UPDATE_ALL in fix_names
    return Request(
        directory=Path(directory),
        install=tuple(dict.fromkeys(n for n in names if n != UPDATE_ALL)),
        fixes=tuple(dict.fromkeys(n for n in fix_names if n != UPDATE_ALL)),
        update_all=update_all,
        flags=tuple(flags),
    )


def scan(directory: Path, runner: Runner = HOST) -> dict[str, Package]:
    """Every package file in the directory, by package name (the newest file wins)."""
    if not directory.is_dir():
        raise UsageError(f"-l {directory}: not a directory", "give the full path of a directory of .deb/.rpm files")
    found: dict[str, Package] = {}
    for path in sorted(directory.iterdir()):
        pkg = _read_package(path, runner)
        if pkg is None:
            continue
        old = found.get(pkg.name)
        if old is None or newer(pkg.version, old.version, pkg.kind, runner):
            found[pkg.name] = pkg
    return found


def _read_package(path: Path, runner: Runner) -> Package | None:
    if path.suffix == ".deb" and path.is_file():
        res = runner.run(["dpkg-deb", "--show", "--showformat=${Package}\\t${Version}\\n", path], check=False)
        if res.returncode != 0:
            raise UsageError(f"-l: {path} is not a readable Debian package: {res.stderr.strip()}")
        name, _, version = res.text.strip().partition("\t")
        return Package(name, version, path, "deb")
    m = _RPM.match(path.name)
    if m and path.is_file():
        return Package(m["name"], m["version"], path, "rpm")
    return None


def newer(a: str, b: str, kind: str, runner: Runner = HOST) -> bool:
    """Is version a newer than b (dpkg's rules for .deb; for .rpm also dpkg's, close enough to rpmvercmp)."""
    res = runner.run(["dpkg", "--compare-versions", a, "gt", b], check=False)
    return res.returncode == 0


def select(req: Request, available: Mapping[str, Package], installed: Mapping[str, str],
           runner: Runner = HOST) -> tuple[list[Package], list[str]]:  # fmt: skip
    """The packages to install and notes on what is skipped; names missing from the directory are errors."""
    missing = [n for n in (*req.install, *req.fixes) if n not in available]
    if missing:
        raise UsageError(f"-l {req.directory}: no package {', '.join(missing)} there", "check the names (-w/-b/-F/-f)")
    chosen: dict[str, Package] = {n: available[n] for n in req.install}
    notes: list[str] = []
    for n in req.fixes:
        pkg = available[n]
        if n not in installed:
            notes.append(f"{n}: not installed in the clone, fix not applied (use -w to install it)")
        elif not newer(pkg.version, installed[n], pkg.kind, runner):
            notes.append(f"{n}: clone already has {installed[n]} (directory has {pkg.version})")
        else:
            chosen[n] = pkg
    if req.update_all:
        for n, pkg in available.items():
            if n in installed and n not in chosen and newer(pkg.version, installed[n], pkg.kind, runner):
                chosen[n] = pkg
    return list(chosen.values()), notes


def parse_installed(text: str) -> dict[str, str]:
    """Lines NAME<tab>VERSION<tab>STATUS, as INSTALLED_QUERY prints them."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[2] == "installed":
            out[parts[0]] = parts[1]
    return out
