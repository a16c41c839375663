"""Live deployment tests (`make live`): a real systemd, a real image, a real browser, promtool.

Every module here sets `pytestmark` with the `live` mark, which pytest.ini deselects unless
`-m live` is given (a plain `pytest tests` collects them and runs none): they
need Debian packages that `make live` installs and take minutes, so `make test` stays quick. A
tool that is missing fails the test rather than skipping it: under `make live` a skip would hide
a broken install step.
"""
from __future__ import annotations

import shutil

import pytest


def need(*tools: str) -> dict[str, str]:
    """{tool: path} of each executable, or fail naming what is missing and who installs it."""
    found = {tool: shutil.which(tool) for tool in tools}
    missing = [tool for tool, path in found.items() if not path]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: `make live` installs the Debian packages")
    return found  # type: ignore[return-value]
