"""A tree holding every kind of name and metadata an archive must keep."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

NAMES = [b"with space", b"new\nline", b"-rf", b"caf\xe9", b"star*[x]", b"a+b?c|d"]


def populate(root: Path) -> None:
    """Files with awkward names, links, special files, owners, modes, xattrs, ACLs, caps, sparseness."""
    r = os.fsencode(root)
    j = os.path.join
    for d in (b"etc", b"tmp", b"tmp/sub", b"home/u", b"var/tmp", b"data"):
        os.makedirs(j(r, d), exist_ok=True)
    for n in NAMES:
        with open(j(r, b"data", n), "wb") as f:
            f.write(b"name test " + n)
    with open(j(r, b"etc/hostname"), "wb") as f:
        f.write(b"tricky\n")
    for p in (b"tmp/junk", b"tmp/sub/junk2", b"var/tmp/keep", b"home/u/tmpfile"):
        with open(j(r, p), "wb") as f:
            f.write(b"x" * 100)
    with open(j(r, b"data/big"), "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024))
    os.link(j(r, b"data/big"), j(r, b"data/big.hardlink"))
    os.symlink(b"../etc/hostname", j(r, b"data/link"))
    os.symlink(b"/nonexistent/target", j(r, b"data/dangling"))
    with open(j(r, b"data/sparse"), "wb") as f:
        f.seek(64 * 1024 * 1024)
        f.write(b"end")
    os.mkfifo(j(r, b"data/fifo"))
    os.mknod(j(r, b"data/null"), 0o20666, os.makedev(1, 3))
    os.mknod(j(r, b"data/blk"), 0o60660, os.makedev(7, 200))
    os.chown(j(r, b"data/with space"), 12345, 54321)
    os.chmod(j(r, b"data/-rf"), 0o4755)
    os.utime(j(r, b"data/caf\xe9"), ns=(1_000_000_000, 1_234_567_891_000))
    os.setxattr(j(r, b"data/big"), b"user.note", b"hello")
    os.setxattr(j(r, b"data/big"), b"trusted.secret", b"\x00\x01binary")
    os.setxattr(j(r, b"data/big"), b"security.selinux", b"system_u:object_r:etc_t:s0\x00")
    subprocess.run(["setfacl", "-m", "u:1000:rwx,g:2000:r", j(r, b"data/with space")], check=True)
    subprocess.run(["setfacl", "-d", "-m", "u:1000:rx", j(r, b"home/u")], check=True)
    subprocess.run(["setcap", "cap_net_raw+ep", j(r, b"data/-rf")], check=True)


def acls(root: Path) -> str:
    """getfacl of the whole tree, paths relative, for comparing ACLs."""
    return subprocess.run(["getfacl", "-R", "-p", "-n", "."], cwd=root, check=True, capture_output=True).stdout.decode(
        "utf-8", "backslashreplace"
    )
