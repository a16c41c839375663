"""The ceiling of the stack: Falcon on waitress, the same listener code and thread count as
mmserver (mmserver.http.server.HttpServer), answering POST /v1/tickets with no work.

The request body is read (a client's bytes must be consumed either way) and a constant
201 JSON answer of the same shape and size as a real one is sent. bench_create.py runs this
and mmserver side by side and loads them in alternation: the ratio says what mmserver's own
work (validation, the Redis round trip, JSON) costs on top of the stack.

    baseline_server.py --port PORT [--threads 16]
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import falcon  # noqa: E402

from mmserver.config import Address  # noqa: E402
from mmserver.http.server import HttpServer  # noqa: E402

# The size of a real answer to POST /v1/tickets, so both servers write as many bytes.
ANSWER = json.dumps({
    "ticket_id": "AAAAAAAAAAAAAAAA", "status": "queued", "version": 1, "mode": "duel",
    "player_id": "p-0-0", "party": [], "mmr": 1500, "region": None,
    "enqueued_at": 1700000000.123, "updated_at": 1700000000.123,
    "token": "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
}).encode()


class NoWork:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.bounded_stream.read()
        resp.status = falcon.HTTP_201
        resp.content_type = falcon.MEDIA_JSON
        resp.data = ANSWER


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args(argv)
    app = falcon.App()
    app.add_route("/v1/tickets", NoWork())
    server = HttpServer([(Address("127.0.0.1", args.port), app)], threads=args.threads,
                        max_request_body_size=1 << 20)
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    while not stop.is_set():
        stop.wait(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
