"""mmadmin: the operator's command line for one mmserver replica's control plane.

    mmadmin [--url URL] [--token TOKEN | --token-file PATH] [--json] [--timeout S] COMMAND [--json]

    COMMAND: status | watch [--interval S] [--count N] | drain [--wait] | undrain
             | shutdown --reason TEXT | match ID | finish-match ID | player ID | release PLAYER

--json may come before or after the command.

The URL comes from --url, else MMADMIN_URL, else http://$MMSERVER_ADMIN_LISTEN (127.0.0.1:8081).
The token comes from --token or --token-file, else MMSERVER_ADMIN_TOKEN, else
MMSERVER_ADMIN_TOKEN_FILE, else $MMSERVER_DATA_DIR/admin.token (./var/admin.token), the file
mmserver writes when it generates a token itself.

Exit status: 0 done; 1 the service is unreachable or failed (or drain --wait timed out, the
last refresh of watch --count failed, or undrain was refused because the replica is stopping);
2 usage or authentication error, or a request the service refused (4xx), such as a match or
player it does not know (404).
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

from mmserver import admin_token
from mmserver.config import DEFAULT_ADMIN_LISTEN, DEFAULT_DATA_DIR

from . import render
from .client import EXIT_FAILURE, EXIT_USAGE, AdminClient, AdminError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmadmin",
        description="Control one mmserver replica through its admin listener.",
        epilog="Exit status: 0 done, 1 service unreachable or failed, 2 usage, token refused, "
               "or a request the service refused (a match or player it does not know). "
               "A player id that starts with '-' goes after '--': mmadmin player --json -- -alice.",
    )
    parser.add_argument("--url", help="admin base URL (default: $MMADMIN_URL, else "
                                      f"http://$MMSERVER_ADMIN_LISTEN, else http://{DEFAULT_ADMIN_LISTEN})")
    source = parser.add_mutually_exclusive_group()
    # A token on the command line is visible to other local users in the process list;
    # --token-file or the environment keep it out of sight.
    source.add_argument("--token", help="admin bearer token (prefer --token-file)")
    source.add_argument("--token-file", type=Path, metavar="PATH", help="file holding the admin token")
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")
    # The same flag after the command ("mmadmin status --json"). SUPPRESS: a command without it
    # leaves whatever the main parser set, instead of resetting it to False.
    json_after = argparse.ArgumentParser(add_help=False)
    json_after.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                            help="print the raw JSON answer")
    parser.add_argument("--timeout", type=_positive_float, default=10.0, metavar="S",
                        help="seconds to wait for each answer (default 10)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("status", parents=[json_after],
                        help="lifecycle state, workers, queues, sessions, servers, replicas")
    watch = commands.add_parser(
        "watch", parents=[json_after], help="live view of the fleet: replicas, queues, sessions, servers, workers",
        description="Redraw the fleet every S seconds from this replica's /admin/status: every "
                    "live replica (state, age of its last matchmaking tick, uptime), queue depths "
                    "per mode with the oldest wait, sessions by state, servers free/busy/stale, and "
                    "this replica's workers. On a terminal the screen is cleared before each "
                    "refresh; otherwise the refreshes are printed as blocks separated by a blank "
                    "line, for pipes and logs (with --json: one status object per line). While "
                    "the service does not answer, the view shows the error and keeps retrying. "
                    "Ctrl-C stops it (exit 0).")
    watch.add_argument("--interval", type=_positive_float, default=2.0, metavar="S",
                       help="seconds between two refreshes (default 2)")
    watch.add_argument("--count", type=_positive_int, metavar="N",
                       help="stop after N refreshes; exit 1 if the last one failed (default: "
                            "until Ctrl-C)")
    drain = commands.add_parser(
        "drain", parents=[json_after], help="stop taking new tickets and report not-ready",
        description="Stop taking new tickets on this replica and report not-ready, so that the "
                    "load balancer sends traffic elsewhere. With --wait, then poll this replica's "
                    "status until its own HTTP requests in flight and long-polls waiting are both "
                    "0, printing progress at each poll. The queues are not waited for: they are "
                    "shared by every replica of the fleet and are matched by whichever replicas "
                    "remain.")
    drain.add_argument("--wait", action="store_true",
                       help="then wait until this replica's requests in flight and long-polls are 0")
    drain.add_argument("--wait-timeout", type=_positive_float, default=60.0, metavar="S",
                       help="give up waiting after S seconds, exit 1 (default 60)")
    drain.add_argument("--interval", type=_positive_float, default=1.0, metavar="S",
                       help="seconds between two polls while waiting (default 1)")
    commands.add_parser(
        "undrain", parents=[json_after], help="take new tickets again after a drain",
        description="End a drain: this replica takes new tickets again and reports ready as soon "
                    "as Redis answers. A replica that is stopping stays stopping (exit 1).")
    shutdown = commands.add_parser("shutdown", parents=[json_after],
                                   help="stop the replica (it exits 1, so it is restarted)")
    shutdown.add_argument("--reason", required=True, help="why: written to the log and to Sentry")
    match = commands.add_parser("match", parents=[json_after], help="look up a match",
                                description="Show one match: its state, server, teams and players.")
    match.add_argument("match_id", metavar="ID", help="the match id")
    finish = commands.add_parser(
        "finish-match", parents=[json_after], help="end a match, as its game server would",
        description="End a match now (reason 'finished by operator'): its server is freed and "
                    "its players' tickets are finished, so they may queue again.")
    finish.add_argument("match_id", metavar="ID", help="the match id")
    player = commands.add_parser(
        "player", parents=[json_after], help="look up a player",
        description="Show what a player is in now: its live ticket, loading session or match.")
    player.add_argument("player_id", metavar="ID", help="the player id")
    release = commands.add_parser(
        "release", parents=[json_after], help="free a stuck player",
        description="Release a player: its live ticket is cancelled, or it leaves its match, "
                    "so it may queue again.")
    release.add_argument("player_id", metavar="PLAYER", help="the player id")
    return parser


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {raw!r}")
    return value


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {raw!r}")
    return value


def default_url(env: Mapping[str, str]) -> str:
    if env.get("MMADMIN_URL"):
        return env["MMADMIN_URL"]
    listen = env.get("MMSERVER_ADMIN_LISTEN") or str(DEFAULT_ADMIN_LISTEN)
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
    generated = Path(env.get("MMSERVER_DATA_DIR") or DEFAULT_DATA_DIR) / admin_token.FILE_NAME
    if not generated.exists():
        raise AdminError(
            f"no admin token: use --token or --token-file, set MMSERVER_ADMIN_TOKEN or "
            f"MMSERVER_ADMIN_TOKEN_FILE, or run where mmserver wrote {generated}",
            EXIT_USAGE,
        )
    return _read_token(generated, "the generated token file")


def _read_token(path: Path, source: str) -> str:
    try:
        return admin_token.read_file(path)
    except admin_token.TokenFileError as error:
        raise AdminError(f"{source}: {error}", EXIT_USAGE) from None


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
        return _run(args, client, out, err)
    except AdminError as error:
        print(f"mmadmin: {error}", file=err)
        return error.exit_status
    except KeyboardInterrupt:
        print("mmadmin: interrupted", file=err)
        return EXIT_FAILURE
    except BrokenPipeError:
        # The reader went away (`mmadmin watch | head`): nothing left to show, not a failure.
        if out is sys.stdout:
            # Python's exit would flush the dead pipe again and print a traceback of its own.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run(args: argparse.Namespace, client: AdminClient, out: TextIO, err: TextIO) -> int:
    if args.command == "status":
        status = client.status()
        _print(out, status, args.json, render.status_text)
    elif args.command == "watch":
        return watch(client, out, interval=args.interval, count=args.count, as_json=args.json)
    elif args.command == "drain":
        _print(out, client.drain(), args.json, render.action_text)
        if args.wait:
            # With --json, stdout holds the drain's answer alone (one JSON document): the
            # progress lines go to stderr.
            return _wait_drained(client, args, err if args.json else out)
    elif args.command == "undrain":
        answer = client.undrain()
        _print(out, answer, args.json, render.action_text)
        if answer.get("accepting_tickets") is False:
            raise AdminError(f"not undrained: the replica is {render.scalar(answer.get('state'))}",
                             EXIT_FAILURE)
    elif args.command == "shutdown":
        _print(out, client.shutdown(args.reason), args.json, render.action_text)
    elif args.command in ("match", "finish-match"):
        call = client.match if args.command == "match" else client.finish_match
        answer = _look_up("match", args.match_id, call)
        _print(out, answer, args.json, lambda record: render.record_text("match", record))
    elif args.command in ("player", "release"):
        call = client.player if args.command == "player" else client.release_player
        answer = _look_up("player", args.player_id, call)
        _print(out, answer, args.json, lambda record: render.record_text("player", record))
    return 0


def _look_up(kind: str, ident: str, call: Callable[[str], dict]) -> dict:
    """call(ident), with a 404 said as what it means here: nothing by that id."""
    try:
        return call(ident)
    except AdminError as error:
        if error.http_status != 404:
            raise
        # The service's own words say whether it looked and found nothing, or has no such path.
        because = f": {error.description}" if error.description else ""
        raise AdminError(f"no {kind} {ident!r} on this service (404{because})", EXIT_USAGE,
                         http_status=404) from None


def _print(out: TextIO, answer: dict, as_json: bool, human: Callable[[dict], str]) -> None:
    print(json.dumps(answer, indent=2, sort_keys=True) if as_json else human(answer), file=out,
          flush=True)


def pending_work(status: Mapping[str, Any]) -> dict[str, int | None]:
    """What still keeps this drained replica busy: its public API requests in flight (the status
    request asking is on the admin listener, not counted) and its long-polls waiting; None where
    the status does not say.

    Fleet-wide queues are not counted: every replica shares them and the others keep matching.
    """
    workers = status.get("workers")
    http = workers.get("http") if isinstance(workers, Mapping) else None
    http = http if isinstance(http, Mapping) else {}
    in_flight, long_polls = _count(http.get("in_flight")), _count(http.get("long_polls"))
    return {"in_flight": in_flight, "long_polls": long_polls}


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _wait_drained(client: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    started = time.monotonic()
    deadline = started + args.wait_timeout
    while True:
        pending = pending_work(client.status())
        # An unknown count (a status without it) is never taken for 0: keep waiting, show "?".
        summary = " ".join(f"{key}={'?' if value is None else value}" for key, value in pending.items())
        if all(value == 0 for value in pending.values()):
            print(f"drained: {summary}", file=out, flush=True)
            return 0
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AdminError(f"still busy after {args.wait_timeout:g} s: {summary}", EXIT_FAILURE)
        print(f"waiting ({time.monotonic() - started:.0f} s): {summary}", file=out, flush=True)
        # A command-line poll, not service code: a plain sleep is the whole loop's pacing.
        time.sleep(min(args.interval, remaining))


def watch(client: AdminClient, out: TextIO, *, interval: float, count: int | None,
          as_json: bool = False, clock: Callable[[], float] = time.time) -> int:
    """Refresh the fleet view every interval seconds, count times (None: until Ctrl-C).

    Returns 0, or 1 when the last of count refreshes failed. An unreachable or failing service
    is shown in the view and retried; a refused token or a wrong URL (exit 2) ends the watch,
    since retrying cannot fix it.
    """
    clear = _is_terminal(out) and not as_json
    refreshes, failed = 0, False
    try:
        while True:
            try:
                status = client.status()
                frame = (json.dumps(status, sort_keys=True, separators=(",", ":")) if as_json
                         else render.watch_text(status, client.base_url, clock()))
                failed = False
            except AdminError as error:
                if error.exit_status != EXIT_FAILURE:
                    raise
                frame = (json.dumps({"error": str(error)}) if as_json
                         else render.watch_error_text(client.base_url, str(error), clock()))
                failed = True
            if clear:
                out.write(render.CLEAR_SCREEN + frame + "\n")
            elif as_json:
                out.write(frame + "\n")
            else:
                # A blank line between blocks: a pipe or a log file keeps every refresh readable.
                out.write(("\n" if refreshes else "") + frame + "\n")
            out.flush()
            refreshes += 1
            if count is not None and refreshes >= count:
                return EXIT_FAILURE if failed else 0
            # A command-line loop, not service code: a plain sleep paces the refreshes.
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how a live view ends


def _is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


if __name__ == "__main__":
    sys.exit(main())
