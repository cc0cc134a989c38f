"""Mount tables: the escaping fstab, mtab and /proc/self/mountinfo use in their fields."""

from __future__ import annotations

import re

_OCTAL = re.compile(r"\\([0-7]{3})")


def unescape(field: str) -> str:
    """A field with its octal escapes decoded: space, tab, newline and backslash are written \\040, \\011, \\012,
    \\134 (getmntent(3))."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)
