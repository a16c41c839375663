"""The README's "Try it", run command for command against a real replica started as `make run`
starts it (embedded Redis, built-in configuration), and its join-token example."""
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.process.harness import MMServer

README = Path(__file__).resolve().parents[2] / "README.md"


def _block(language: str, after: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(after):]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"no {language} block after {after!r} in the README"
    return match.group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walk-through uses curl")
def test_the_walk_through_runs_end_to_end_on_the_defaults(tmp_path):
    # As on `make run`: no MMSERVER_CONFIG, no Redis URL. Only the port differs.
    server = MMServer(tmp_path).start()
    try:
        server.wait_ready()
        script = _block("sh", "## Try it").replace("API=localhost:8080", f"API=127.0.0.1:{server.port}")
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                                capture_output=True, text=True, timeout=90)
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout.splitlines()
        assert json.loads(out[0])["state"] == "free"  # the server registered
        assert out[1] == "matched"  # the long-poll saw the match
        assignment = eval(out[2], {})  # python's repr of the assignment object
        assert assignment["server"] == "127.0.0.1:7777" and assignment["teams"] == [["alice"], ["bob"]]
        roster = eval(out[3], {})
        assert [[p["player_id"] for p in team["players"]] for team in roster] == [["alice"], ["bob"]]
        assert json.loads(out[4])["status"] == "finished"
        assert out[5] == "finished"

        # The join-token example, on a roster and a join token of a real match.
        namespace: dict = {}
        exec(_block("python", "A game server lets a player in"), namespace)
        may_join = namespace["may_join"]
        full = {"teams": roster}
        assert may_join(full, "alice", assignment["join_token"])
        assert not may_join(full, "bob", assignment["join_token"])
        # One character changed (a token that already ends in "0" gets a "1": replacing it with
        # "0" would leave it unchanged, and the check would fail one run in 16).
        token = assignment["join_token"]
        assert not may_join(full, "alice", token[:-1] + ("1" if token.endswith("0") else "0"))
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
