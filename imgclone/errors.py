"""Exception hierarchy; each error carries the exit code main() uses."""

from __future__ import annotations


class ImgcloneError(Exception):
    """A failure the user can act on: one line, an optional hint, an exit code."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(ImgcloneError):
    """Bad flags, paths or arguments: nothing was done."""

    exit_code = 2


class LayoutError(ImgcloneError):
    """A layout (probed, archived or user-edited) that is not consistent."""

    exit_code = 2


class CommandError(ImgcloneError):
    """A host command failed."""

    def __init__(self, argv: list[str], returncode: int, stderr: str = "") -> None:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        msg = f"{argv[0]} failed with exit code {returncode}"
        if last:
            msg += f": {last}"
        super().__init__(msg)
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr


class GuestfsError(ImgcloneError):
    """libguestfs reported an error."""


class ArchiveError(ImgcloneError):
    """An archive that is not an imgclone archive, is damaged or unsupported."""


class ReadErrors(ImgcloneError):
    """Files could not be read during capture (AIX's backup errors)."""


class PhaseStateError(ImgcloneError):
    """A phase that needs an earlier one which is missing or stale."""
