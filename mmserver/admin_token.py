"""The admin token mmserver makes for itself when none is configured (loopback listener only).

It lives in MMSERVER_DATA_DIR/admin.token, mode 0600, where mmadmin on the same host finds it,
and is reused across restarts so that an operator's `mmadmin watch` (which read it once)
survives a restart. It is reused only when the file is one we can trust: a regular file (not
a link, a pipe or a directory), owned by this process's user, with no group or other
permission bits, holding one non-empty token. Anything else is replaced by a new token, and
the caller is told why. The token itself never appears in a message.
"""
from __future__ import annotations

import errno
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mmserver import small_file

FILE_NAME = "admin.token"
MAX_FILE_BYTES = 4096  # far more than any token; a larger file is not one we wrote
NONE_YET = "there was none"


class TokenFileError(ValueError):
    """A token file that cannot be read or holds no token; the message names the file and why."""


@dataclass(frozen=True)
class AdminToken:
    token: str
    reused: bool
    why_new: str | None  # why a new token was generated; None when the file's was reused


def prepare(path: Path) -> AdminToken:
    """The token in `path` if it can be trusted, else a new one written there (OSError if that
    fails)."""
    token, why_not = read_reusable(path)
    if token is not None:
        return AdminToken(token, reused=True, why_new=None)
    token = secrets.token_urlsafe(32)
    write(path, token)
    return AdminToken(token, reused=False, why_new=why_not)


def read_file(path: Path) -> str:
    """The token in a file an operator points to (surrounding whitespace stripped), read with no
    check of its owner or mode: TokenFileError if it cannot be read or is empty, or is not a
    regular file of at most 1 MiB (small_file.py: /dev/zero or a FIFO would hang the read)."""
    try:
        token = small_file.read_bytes(path).decode("utf-8").strip()
    except small_file.NotASmallFile as error:
        raise TokenFileError(f"{path} {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        why = getattr(error, "strerror", None) or str(error)
        raise TokenFileError(f"cannot read {path}: {why}") from None
    if not token:
        raise TokenFileError(f"{path} is empty")
    return token


def read_reusable(path: Path) -> tuple[str | None, str]:
    """(token, "") when the file can be reused, else (None, why not)."""
    try:
        # O_NOFOLLOW: a symbolic link is refused, not followed; O_NONBLOCK: a FIFO placed there
        # does not hang the start.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, NONE_YET
    except OSError as error:
        if error.errno == errno.ELOOP:
            return None, "the existing one is a symbolic link"
        return None, f"the existing one cannot be read: {error.strerror or error}"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, "the existing one is not a regular file"
        if info.st_uid != os.geteuid():
            return None, f"the existing one is owned by uid {info.st_uid}, not by uid {os.geteuid()}"
        if info.st_mode & 0o077:
            return None, (f"the existing one has mode {stat.S_IMODE(info.st_mode):04o}: "
                          f"group or others may use it")
        data = os.read(fd, MAX_FILE_BYTES + 1)
    except OSError as error:
        return None, f"the existing one cannot be read: {error.strerror or error}"
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        return None, "the existing one is too large to be a token"
    try:
        token = data.decode("ascii").strip()
    except UnicodeDecodeError:
        return None, "the existing one does not hold a token"
    if not token:
        return None, "the existing one is empty"
    # A bearer token is one word of printable ASCII (token68), as Authorization carries it.
    if any(not char.isprintable() or char.isspace() for char in token):
        return None, "the existing one does not hold a token"
    return token, ""


def write(path: Path, token: str) -> None:
    """Write the token, mode 0600, replacing whatever is at `path` in one rename.

    A temporary file in the same directory is renamed over the old one, so a reader sees the
    old token or the new one, never half of one, and a symbolic link at `path` is replaced
    rather than followed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
