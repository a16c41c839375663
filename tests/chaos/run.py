"""One chaos run: start Redis and the replicas, play traffic while injecting the planned faults,
stop the clients, let every deadline pass, check the invariants, stop everything."""
from __future__ import annotations

import dataclasses
import logging
import random
import shutil
import tempfile
import threading
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from mmserver.store import keys
from tests.chaos import faults as faults_module
from tests.chaos.checker import Checker, Violation, read_event_log
from tests.chaos.cluster import DurableRedis, OutageClock, Supervisor
from tests.chaos.faults import Injector
from tests.chaos.ledger import Ledger
from tests.chaos.report import summary
from tests.chaos.settings import WEBHOOK_SECRET, ChaosSettings
from tests.chaos.traffic import Players, Router, ServerFleet
from tests.webhook_receiver import WebhookReceiver

logger = logging.getLogger(__name__)

RETENTION_S = 3600  # mmserver.store.store.DEFAULT_RETENTION_S: nothing is purged during a run
WEBHOOK_FIRST_FAILURES = 5  # one event in this many is answered 500 at its first attempt
WEBHOOK_DELIVERY_WAIT_S = 90.0  # after the settle: time for the last retries to arrive


def failing_first(event_id: str, attempt: int) -> int:
    """The run's receiver: a seeded share of events fail their first attempt, then succeed."""
    return 500 if attempt == 1 and zlib.crc32(event_id.encode()) % WEBHOOK_FIRST_FAILURES == 0 else 200


def check_webhooks(receiver: WebhookReceiver, client) -> tuple[list[Violation], dict]:
    """Every event in the log arrived at least once, signed; nothing arrived that the log lacks."""
    log = {event["id"]: event for event in read_event_log(client)}
    missing = receiver.wait_for(set(log), WEBHOOK_DELIVERY_WAIT_S)
    violations = [Violation("webhook", event_id, f"{log[event_id]['type']} never delivered")
                  for event_id in sorted(missing)[:50]]
    if len(missing) > 50:
        violations.append(Violation("webhook", "events", f"{len(missing)} events never delivered in all"))
    for bad in receiver.bad_signatures():
        violations.append(Violation("webhook", bad.event_id, "delivered with a signature that does not verify"))
    with receiver.lock:
        received = list(receiver.received)
    for arrival in received:
        event = log.get(arrival.event_id)
        if event is None:
            violations.append(Violation("webhook", arrival.event_id, "delivered, but the log never had it"))
        elif arrival.event.get("type") != event["type"] or arrival.event.get("ticket_id") != event.get("ticket_id"):
            violations.append(Violation("webhook", arrival.event_id, f"delivered {arrival.event}, the log has {event}"))
    dead = client.xlen(keys.WEBHOOK_DEAD)
    if dead:
        violations.append(Violation("webhook", "dead letters", f"{dead} events dead-lettered"))
    attempts = Counter(r.answered for r in received)
    delivered = {r.event_id for r in received if 200 <= r.answered < 300}
    figures = {"events": len(log), "delivered": len(delivered), "posts": len(received),
               "refused_first_tries": attempts.get(500, 0),
               "duplicates": sum(1 for r in received if 200 <= r.answered < 300) - len(delivered),
               "backfills_filled": sum(1 for event in log.values() if event["type"] == "backfill.filled")}
    return violations, figures


@dataclass(frozen=True)
class Options:
    seed: int
    duration_s: float
    replicas: int
    faults: int
    players: int = 8
    servers: int = 3
    workdir: Path | None = None
    keep: bool = False


def count_tracebacks(workdir: Path) -> int:
    return sum(path.read_text(errors="replace").count("Traceback (most recent call last)")
               for path in workdir.glob("replica-*/gen-*/output.log"))


def run(options: Options, settings: ChaosSettings | None = None) -> dict:
    settings = settings or ChaosSettings()
    workdir = Path(options.workdir or tempfile.mkdtemp(prefix="mmchaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started_wall = time.monotonic()
    redis = DurableRedis(workdir / "redis").start()
    receiver = WebhookReceiver(WEBHOOK_SECRET, failing_first).start()
    settings = dataclasses.replace(settings, webhook_url=receiver.url)
    # An exit 1 this long after Redis came back is still the outage's doing: the subscriber's
    # last attempts, then the bounded stop sequence.
    outage = OutageClock(margin_s=settings.reconnect_budget_s + 12.0 + settings.shutdown_timeout_s)
    supervisor = Supervisor(workdir, options.replicas, redis_url=redis.url,
                            env=settings.replica_env(settings.write_config(workdir)),
                            restart_delay_s=settings.restart_delay_s, redis_outage=outage)
    stop_clients, stop_servers, stop_faults = threading.Event(), threading.Event(), threading.Event()
    ledger = Ledger()
    violations: list[Violation] = []
    problems: list[str] = []
    api_read = 0
    injector = None
    fleet = players = None
    try:
        supervisor.start()
        if not supervisor.wait_all_ready(60):
            raise RuntimeError(f"replicas not ready within 60 s; see {workdir}")
        fleet = ServerFleet(Router(supervisor.ready_urls, stop_servers), random.Random(f"{options.seed}-servers"),
                            stop_servers, count=options.servers, static=settings.static_servers)
        players = Players(Router(supervisor.ready_urls, stop_clients), ledger, fleet, stop_clients,
                          seed=options.seed, threads=options.players)
        plan = faults_module.plan(options.seed, options.duration_s, options.faults, options.replicas)
        injector = Injector(plan, supervisor=supervisor, redis=redis, outage=outage, players=players, fleet=fleet,
                            settings=settings, stop=stop_faults)
        fleet.start()
        players.start()
        traffic_started = time.monotonic()
        injector.run(traffic_started)
        remaining = traffic_started + options.duration_s - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        logger.info("traffic stops after %.1f s; %d tickets acknowledged", time.monotonic() - traffic_started,
                    len(ledger))
        stop_clients.set()
        players.join(30)
        if not redis.running:
            redis.start()
        if not supervisor.wait_all_ready(60):
            problems.append("replicas not all ready after the last fault")
        logger.info("settling for %.0f s", settings.settle_s)
        time.sleep(settings.settle_s)
        stop_servers.set()  # busy registered servers now fall silent: their matches end "server lost"
        fleet.join(10)
        time.sleep(settings.heartbeat_ttl_s + 2.0)
        checker = Checker(redis.client(decode_responses=True), ledger, slack_s=2.0, retention_s=RETENTION_S,
                          heartbeat_ttl_s=settings.heartbeat_ttl_s,
                          silenced=[(s.server_id, s.silent_at) for s in fleet.silenced()])
        snap = checker.check_redis()
        final_statuses = Counter(snap.tickets[t].get("s", "gone") if t in snap.tickets else "gone"
                                 for t in ledger.records)
        urls = supervisor.ready_urls()
        if urls:
            api_read = checker.check_api(urls[0])
        else:
            problems.append("no ready replica for the API check")
        violations += checker.violations
        violations += [Violation("duplicated", match_id, f"roster seen by its server: {detail}")
                       for match_id, detail in fleet.anomalies]
        webhook_violations, webhook_figures = check_webhooks(receiver, redis.client(decode_responses=True))
        violations += webhook_violations
    finally:
        receiver.stop()
        stop_faults.set()
        stop_clients.set()
        stop_servers.set()
        supervisor.stop()
        redis.resume() if redis.running else None
        redis.stop()
    exits = supervisor.exits
    for record in exits:
        if record.unexpected or record.status == 2:
            violations.append(Violation("exit_status", f"replica {record.replica} gen {record.generation}",
                                        f"{record.kind} (cause {record.cause}, expected {record.expected}): "
                                        f"{record.last_line}"))
    if injector is not None:
        problems += injector.problems
    violations += [Violation("lifecycle", "injector", p) for p in problems]
    traffic = dict(players.counts) if players else {}
    traffic.update({f"servers_{k}": v for k, v in (fleet.counts.items() if fleet else ())})
    traffic["replica_starts"] = supervisor.starts
    traffic.update({f"webhook_{k}": v for k, v in (webhook_figures if 'webhook_figures' in locals() else {}).items()})
    traffic["replica_log_tracebacks"] = count_tracebacks(workdir)
    for key, n in traffic.items():
        if key.endswith("_500"):  # SPEC: never a 500, whatever happens to Redis or replicas
            violations.append(Violation("api", key, f"{n} answer(s) 500"))
    result = summary(
        options={**asdict(options), "workdir": str(workdir), "settings": asdict(settings)},
        elapsed_s=time.monotonic() - started_wall,
        planned=Counter(f.kind for f in injector._faults) if injector else Counter(),
        injected=injector.injected if injector else Counter(),
        skipped=injector.skipped if injector else Counter(),
        acknowledged=len(ledger), violations=violations, exits=exits,
        final_statuses=final_statuses if 'final_statuses' in locals() else Counter(),
        traffic=traffic, orphans=len(ledger.orphans), api_read=api_read, problems=problems,
        longest_matched_s=max((r.longest_matched_s for r in ledger.records.values()), default=0.0),
    )
    result["fault_log"] = injector.log if injector else []
    if not options.keep and not violations and options.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return result
