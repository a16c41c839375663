"""A stop asked for while the command is still starting (importing the stack, connecting) is a
stop like any other: exit 0 and no traceback, not a death by signal or a KeyboardInterrupt."""
from __future__ import annotations

import signal
import time

import pytest

from tests.process.harness import MMServer


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("after_s", [0.15, 0.4, 0.7])
def test_a_stop_signal_during_start_up_exits_0(tmp_path, redis_server, signum, after_s):
    server = MMServer(tmp_path, redis_url=redis_server.url).start()
    time.sleep(after_s)
    server.signal(signum)
    assert server.wait(30) == 0, server.output()
    assert "Traceback" not in server.output() and "KeyboardInterrupt" not in server.output()
