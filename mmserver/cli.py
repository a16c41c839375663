"""The `mmserver` command: argv and environment -> Config -> Replica -> Lifecycle -> exit status."""
from __future__ import annotations

import os
import sys
from typing import Mapping, Sequence

from mmserver.shutdown import EXIT_USAGE, catch_stop_signals


def run(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    # Imported here, after main() caught the stop signals: the stack takes most of a second to
    # import, and a SIGTERM meanwhile is a stop like any other.
    from mmserver.config import ConfigError, load

    try:
        config = load(argv, environ)
    except ConfigError as error:
        print(f"mmserver: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    # Imported here so that a configuration error is reported without loading the stack.
    from mmserver.lifecycle import Lifecycle
    from mmserver.replica import Replica

    return Lifecycle(Replica(config, environ=environ)).run()


def main(argv: Sequence[str] | None = None) -> None:
    catch_stop_signals()  # first of all: from here on SIGTERM and SIGINT are stop requests
    status = run(sys.argv[1:] if argv is None else argv, os.environ)
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything that had to be delivered has been by now (Sentry flushed, log queue drained,
    # embedded Redis stopped). os._exit skips joining threads that a stuck library may still
    # hold, which would otherwise delay the exit until the watchdog fires.
    os._exit(status)
