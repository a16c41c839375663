"""mmadmin: the operator's command line for one mmserver replica's control plane.

    mmadmin [--url URL] [--token TOKEN | --token-file PATH] [--json] [--timeout S]
            {status | drain [--wait] | shutdown --reason TEXT}

The URL comes from --url, else MMADMIN_URL, else http://$MMSERVER_ADMIN_LISTEN (127.0.0.1:8081).
The token comes from --token or --token-file, else MMSERVER_ADMIN_TOKEN, else
MMSERVER_ADMIN_TOKEN_FILE, else $MMSERVER_DATA_DIR/admin.token (./var/admin.token), the file
mmserver writes when it generates a token itself.

Exit status: 0 done; 1 the service is unreachable or failed (or drain --wait timed out);
2 usage or authentication error.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

from . import render
from .client import EXIT_FAILURE, EXIT_USAGE, AdminClient, AdminError

DEFAULT_ADMIN_LISTEN = "127.0.0.1:8081"
DEFAULT_DATA_DIR = "./var"
TOKEN_FILE_NAME = "admin.token"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmadmin",
        description="Control one mmserver replica through its admin listener.",
        epilog="Exit status: 0 done, 1 service unreachable or failed, 2 usage or token refused.",
    )
    parser.add_argument("--url", help="admin base URL (default: $MMADMIN_URL, else "
                                      "http://$MMSERVER_ADMIN_LISTEN, else http://127.0.0.1:8081)")
    source = parser.add_mutually_exclusive_group()
    # A token on the command line is visible to other local users in the process list;
    # --token-file or the environment keep it out of sight.
    source.add_argument("--token", help="admin bearer token (prefer --token-file)")
    source.add_argument("--token-file", type=Path, metavar="PATH", help="file holding the admin token")
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")
    parser.add_argument("--timeout", type=_positive_float, default=10.0, metavar="S",
                        help="seconds to wait for each answer (default 10)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("status", help="lifecycle state, workers, queues, sessions, servers, replicas")
    drain = commands.add_parser("drain", help="stop taking new tickets and report not-ready")
    drain.add_argument("--wait", action="store_true",
                       help="then poll status until nothing is in flight and the queues are empty")
    drain.add_argument("--wait-timeout", type=_positive_float, default=60.0, metavar="S",
                       help="give up waiting after S seconds, exit 1 (default 60)")
    drain.add_argument("--interval", type=_positive_float, default=1.0, metavar="S",
                       help="seconds between two polls while waiting (default 1)")
    shutdown = commands.add_parser("shutdown", help="stop the replica (it exits 1, so it is restarted)")
    shutdown.add_argument("--reason", required=True, help="why: written to the log and to Sentry")
    return parser


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {raw!r}")
    return value


def default_url(env: Mapping[str, str]) -> str:
    if env.get("MMADMIN_URL"):
        return env["MMADMIN_URL"]
    listen = env.get("MMSERVER_ADMIN_LISTEN") or DEFAULT_ADMIN_LISTEN
    host, sep, port = listen.rpartition(":")
    if not sep:
        return f"http://{listen}"
    host = host.strip("[]")
    # A wildcard listener is reached on this host's loopback address.
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and address.is_unspecified:
        host = "127.0.0.1" if address.version == 4 else "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def resolve_token(token: str | None, token_file: Path | None, env: Mapping[str, str]) -> str:
    """The token from the first source that names one; AdminError(exit 2) if none works."""
    if token is not None:
        if not token.strip():
            raise AdminError("--token is empty", EXIT_USAGE)
        return token.strip()
    if token_file is not None:
        return _read_token(token_file, "--token-file")
    if env.get("MMSERVER_ADMIN_TOKEN"):
        return env["MMSERVER_ADMIN_TOKEN"].strip()
    if env.get("MMSERVER_ADMIN_TOKEN_FILE"):
        return _read_token(Path(env["MMSERVER_ADMIN_TOKEN_FILE"]), "MMSERVER_ADMIN_TOKEN_FILE")
    generated = Path(env.get("MMSERVER_DATA_DIR") or DEFAULT_DATA_DIR) / TOKEN_FILE_NAME
    if not generated.exists():
        raise AdminError(
            f"no admin token: use --token or --token-file, set MMSERVER_ADMIN_TOKEN or "
            f"MMSERVER_ADMIN_TOKEN_FILE, or run where mmserver wrote {generated}",
            EXIT_USAGE,
        )
    return _read_token(generated, "the generated token file")


def _read_token(path: Path, source: str) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        why = getattr(error, "strerror", None) or str(error)
        raise AdminError(f"{source}: cannot read {path}: {why}", EXIT_USAGE) from None
    if not token:
        raise AdminError(f"{source}: {path} is empty", EXIT_USAGE)
    return token


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
         out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run mmadmin; returns the exit status. env, out, err default to the process's own."""
    env = os.environ if env is None else env
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits 2 on usage errors and 0 after --help
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        url = args.url or default_url(env)
        if not url.startswith(("http://", "https://")):
            raise AdminError(f"the admin URL must start with http:// or https://, got {url!r}",
                             EXIT_USAGE)
        client = AdminClient(url, resolve_token(args.token, args.token_file, env), args.timeout)
        return _run(args, client, out)
    except AdminError as error:
        print(f"mmadmin: {error}", file=err)
        return error.exit_status
    except KeyboardInterrupt:
        print("mmadmin: interrupted", file=err)
        return EXIT_FAILURE


def _run(args: argparse.Namespace, client: AdminClient, out: TextIO) -> int:
    if args.command == "status":
        status = client.status()
        _print(out, status, args.json, render.status_text)
    elif args.command == "drain":
        _print(out, client.drain(), args.json, render.action_text)
        if args.wait:
            return _wait_drained(client, args, out)
    elif args.command == "shutdown":
        _print(out, client.shutdown(args.reason), args.json, render.action_text)
    return 0


def _print(out: TextIO, answer: dict, as_json: bool, human: Callable[[dict], str]) -> None:
    print(json.dumps(answer, indent=2, sort_keys=True) if as_json else human(answer), file=out,
          flush=True)


def pending_work(status: Mapping[str, Any]) -> dict[str, int]:
    """What still keeps a drained replica busy: queued and matched tickets, requests in flight."""
    counts = {"queued": 0, "matched": 0, "in_flight": 0}
    queues = status.get("queues")
    if isinstance(queues, Mapping):
        for depths in queues.values():
            if isinstance(depths, Mapping):
                for key in ("queued", "matched"):
                    counts[key] += _count(depths.get(key))
    counts["in_flight"] = sum(_count(value) for value in _find_key(status, "in_flight"))
    return counts


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _find_key(data: Any, wanted: str):
    if isinstance(data, Mapping):
        for key, value in data.items():
            if key == wanted:
                yield value
            else:
                yield from _find_key(value, wanted)
    elif isinstance(data, list):
        for item in data:
            yield from _find_key(item, wanted)


def _wait_drained(client: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    deadline = time.monotonic() + args.wait_timeout
    while True:
        pending = pending_work(client.status())
        summary = " ".join(f"{key}={value}" for key, value in pending.items())
        if not any(pending.values()):
            print(f"drained: {summary}", file=out, flush=True)
            return 0
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AdminError(f"still busy after {args.wait_timeout:g} s: {summary}", EXIT_FAILURE)
        print(f"waiting: {summary}", file=out, flush=True)
        # A command-line poll, not service code: a plain sleep is the whole loop's pacing.
        time.sleep(min(args.interval, remaining))


if __name__ == "__main__":
    sys.exit(main())
