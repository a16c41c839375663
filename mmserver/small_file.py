"""Files an operator names (the TOML configuration, token and key files): read whole, but only
when they are regular files of a bounded size.

`/dev/zero` read whole never ends and takes all memory; a FIFO blocks the open until a writer
comes, which may be never. The file is opened with O_NONBLOCK (a FIFO's open then returns at
once) and refused unless fstat says it is a regular file (a symbolic link to one is followed:
Kubernetes mounts ConfigMaps and Secrets that way); the read stops one byte past the bound.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_BYTES = 1024 * 1024  # far beyond any configuration, key or token file
MAX_SHOWN = "1 MiB"


class NotASmallFile(ValueError):
    """Not a regular file, or larger than the bound; the message says which, without the path."""


def read_bytes(path: Path | str, max_bytes: int = MAX_BYTES, shown: str = MAX_SHOWN) -> bytes:
    """The file's bytes; NotASmallFile for anything but a regular file of at most `max_bytes`,
    OSError when it cannot be opened or read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotASmallFile("is not a regular file")
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > max_bytes:
        raise NotASmallFile(f"is larger than {shown}")
    return b"".join(chunks)
