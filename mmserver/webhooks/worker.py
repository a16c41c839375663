"""The delivery thread of one replica: reads the event log through the consumer group, POSTs
each event, acknowledges on a 2xx, retries what is due, buries what is exhausted.

Loop, until the shutdown event is set:
1. read new entries (both streams, blocking at most READ_BLOCK_MS) and deliver them in order;
2. every RETRY_SCAN_S (or when nothing new came): look through the group's pending entries, of
   any consumer, for those whose retry is due (retry.RetryPolicy), claim them and deliver them:
   a dead replica's entries are retried by the living like anyone's;
3. now and then, forget consumers idle for CONSUMER_IDLE_S that own nothing (dead replicas).

Error policy: Redis away (a connection error, a timeout, RedisUnavailable) is an outage: one
WARNING, then retries with the replica's Redis backoff (capped, waiting on the shutdown event),
forever; the subscriber decides when Redis has been away too long. A failing receiver is normal
operation (counted, logged at INFO, retried). Anything else is a bug: logged with its traceback,
and the replica stops with status 1 like for any dying worker.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable, Protocol

from mmserver.backoff import Backoff
from mmserver.failures import REDIS_AWAY
from mmserver.shutdown import EXIT_RESTART, WORKER, Shutdown
from mmserver.store.deliveries import LAST_ATTEMPT, TAKEN, Deliveries, Delivery, NoGroup
from mmserver.webhooks import signing
from mmserver.webhooks.retry import RetryPolicy
from mmserver.webhooks.sender import Outcome, Sender

logger = logging.getLogger(__name__)

READ_COUNT = 32
READ_BLOCK_MS = 500
RETRY_SCAN_S = 0.5
RETRY_SCAN_COUNT = 200  # pending entries looked at per stream per scan (a cursor goes on from there)
CONSUMER_IDLE_S = 3600.0  # a consumer this idle owning nothing is a replica gone for good
REAP_EVERY_S = 300.0
# Entries of a batch still waiting their turn are held again this often (Deliveries.keep: their
# idle time reset, no attempt counted), so that a slow receiver working through the batch does
# not let another replica's retry scan find them due; one another replica took meanwhile is
# left to it.
HOLD_CHECK_S = 1.0
REDIS_AWAY_ERRORS = REDIS_AWAY + (OSError,)


class Recorder(Protocol):
    """Where outcomes go (mmserver.metrics.Metrics implements it)."""

    def webhook_delivery(self, outcome: str, count: int = 1) -> None: ...

    def webhook_latency(self, seconds: float) -> None: ...


class DeliveryWorker:
    def __init__(self, deliveries: Deliveries, sender: Sender, *, secret: str, policy: RetryPolicy,
                 wants: Callable[[str], bool], shutdown: Shutdown, backoff: Backoff, recorder: Recorder,
                 clock: Callable[[], float] = time.time) -> None:
        self._deliveries = deliveries
        self._sender = sender
        self._secret = secret.encode("utf-8")
        self._policy = policy
        self._wants = wants
        self._shutdown = shutdown
        self._backoff = backoff
        self._recorder = recorder
        self._clock = clock
        self._thread: threading.Thread | None = None
        self._cursors: dict[str, str] = {}
        self._groups_ready = False
        self._group_start = "$"  # first start: from now on (docs/WEBHOOKS.md)
        self._next_scan = 0.0
        self._next_reap = 0.0
        # Status fields: written by the worker thread only; plain reads need no lock.
        self._redis_ok = False
        self._redis_failures = 0
        self._last_error: str | None = None
        self._last_delivered_at: float | None = None

    # --- lifecycle ---

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the delivery worker was already started")
        # A daemon, joined with a bound by the stop sequence: an attempt in flight (bounded by
        # the request timeout) must never hold the process past its deadline.
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> bool:
        if self._thread is None:
            return True
        self._thread.join(max(0.0, timeout))
        if self._thread.is_alive():
            return False
        self._sender.close()
        try:
            self._deliveries.leave()
        except REDIS_AWAY_ERRORS as error:
            logger.info("webhooks: could not remove this consumer from the group: %s", error)
        return True

    def status(self) -> dict:
        return {"alive": self._thread is not None and self._thread.is_alive(),
                "consumer": self._deliveries.consumer, "redis_ok": self._redis_ok,
                "last_error": self._last_error, "last_delivered_at": self._last_delivered_at}

    # --- the thread ---

    def _run(self) -> None:
        try:
            while not self._shutdown.is_set():
                try:
                    self._step()
                except NoGroup as missing:
                    # The stream was deleted (or Redis lost its data): everything it holds now
                    # came after, so the group restarts from its beginning.
                    logger.warning("webhooks: the consumer group is gone (%s); creating it again from "
                                   "the oldest event kept", missing)
                    self._groups_ready, self._group_start = False, "0"
                except REDIS_AWAY_ERRORS as error:
                    self._redis_away(error)
        except Exception as error:
            logger.error("webhook delivery thread died", exc_info=error)
            self._shutdown.request(f"webhook delivery thread died: {error!r}", EXIT_RESTART, WORKER)

    def _redis_away(self, error: BaseException) -> None:
        self._redis_ok = False
        delay = self._backoff.delay(min(self._redis_failures, 62))
        if self._redis_failures == 0:
            logger.warning("webhooks: Redis unavailable (%s); deliveries wait, retrying", error)
        else:
            logger.debug("webhooks: Redis still unavailable (%s); next try in %.1f s", error, delay)
        self._redis_failures += 1
        self._shutdown.wait(delay)

    def _step(self) -> None:
        if not self._groups_ready:
            self._deliveries.ensure_groups(self._group_start)
            self._groups_ready = True
        fresh = self._deliveries.read_new(READ_COUNT, READ_BLOCK_MS)
        self._redis_back()
        self._deliver_all(fresh)
        now = time.monotonic()
        if now >= self._next_scan and not self._shutdown.is_set():
            self._next_scan = now + RETRY_SCAN_S
            self._retry_due()
        if now >= self._next_reap:
            self._next_reap = now + REAP_EVERY_S
            removed = self._deliveries.remove_idle_consumers(CONSUMER_IDLE_S)
            if removed:
                logger.info("webhooks: removed %d consumers of replicas gone for good", removed)

    def _redis_back(self) -> None:
        if self._redis_failures:
            logger.warning("webhooks: Redis answers again; deliveries resume")
        self._redis_failures = 0
        self._redis_ok = True

    def _retry_due(self) -> None:
        waiting = self._deliveries.waiting(self._cursors, RETRY_SCAN_COUNT, self._policy.shortest_delay)
        for stream in {entry.stream for entry in waiting} | set(self._cursors):
            rows = [entry.entry_id for entry in waiting if entry.stream == stream]
            # A short page means the end of that stream's list: the next scan starts over.
            self._cursors[stream] = rows[-1] if len(rows) >= RETRY_SCAN_COUNT else ""
        due = [entry for entry in waiting if self._policy.due(entry.attempts, entry.idle_s)]
        if not due:
            return
        claimed, gone = self._deliveries.claim(due, lambda entry: self._policy.delay(entry.attempts))
        if gone:
            # Trimmed from the log before it could be delivered ([events] bounds); claim()
            # acknowledged them.
            self._recorder.webhook_delivery("dropped", len(gone))
            logger.warning("webhooks: %d events left the log before delivery (dropped)", len(gone))
        self._deliver_all(claimed)

    def _deliver_all(self, deliveries: list[Delivery]) -> None:
        """Each in order, acknowledged as soon as it is done: an entry delivered but still
        pending until the batch's end was found idle by another replica's retry scan and sent
        again. The entries still waiting their turn are held every HOLD_CHECK_S."""
        batch = [_Held(delivery) for delivery in deliveries]
        held_at = min((delivery.read_at for delivery in deliveries), default=0.0)
        for index, item in enumerate(batch):
            if self._shutdown.is_set():
                break  # left pending: retried after its delay, here or elsewhere
            now = time.monotonic()
            if now - held_at >= HOLD_CHECK_S:
                for waiting in batch[index:]:
                    self._hold(waiting, now)
                held_at = now
            if item.taken:
                continue  # another replica retried it meanwhile: its attempt, not ours
            if self._deliver(item.delivery, item.log_dropped):
                self._deliveries.acknowledge([item.delivery])

    def _hold(self, item: "_Held", now: float) -> None:
        if item.taken:
            return
        kept = self._deliveries.keep(item.delivery, now - item.held_from)
        item.held_from = now
        item.taken = kept == TAKEN
        item.log_dropped = item.log_dropped or kept == LAST_ATTEMPT

    def _deliver(self, delivery: Delivery, log_dropped: bool = False) -> bool:
        """One attempt. True: acknowledge it (delivered or skipped); False: it stays pending or
        was buried. `log_dropped`: the log dropped the event while this replica held it (keep()
        acknowledged it), so no retry can follow: if this attempt fails, the event held here
        becomes a dead letter (replayable)."""
        event = delivery.event
        if not self._wants(event["type"]):
            self._recorder.webhook_delivery("skipped")
            return True
        # Even with a count past max_attempts: Redis counts reads and claims, so a replica that
        # stopped (or stalled past the retry delay) holding this entry may not have made the
        # attempt its count includes. At least once: one more attempt, the last (exhausted).
        outcome = self._send(event)
        if outcome.ok:
            self._last_delivered_at = self._clock()
            self._recorder.webhook_delivery("delivered")
            self._recorder.webhook_latency(max(0.0, self._last_delivered_at - event["at"]))
            return True
        self._last_error = outcome.error
        self._recorder.webhook_delivery("failed")
        if self._policy.exhausted(delivery.attempts):
            self._bury(delivery, outcome.error or "failed")
        elif log_dropped:
            self._bury(delivery, f"{outcome.error or 'failed'} (the event left the log meanwhile: no retry)")
        else:
            logger.info("webhooks: event %s (%s) attempt %d failed: %s; retry in %.1f s", event["id"],
                        event["type"], delivery.attempts, outcome.error, self._policy.delay(delivery.attempts))
        return False

    def _send(self, event: dict) -> Outcome:
        body = json.dumps(event, separators=(",", ":")).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "X-Mmserver-Event-Id": event["id"],
            "X-Mmserver-Signature": signing.signature_header(self._secret, int(self._clock()), body),
        }
        return self._sender.post(body, headers)

    def _bury(self, delivery: Delivery, error: str) -> None:
        dead_id = self._deliveries.bury(delivery, error)
        self._recorder.webhook_delivery("dead")
        logger.warning("webhooks: event %s (%s) is a dead letter (%s) after %d attempts: %s",
                       delivery.event["id"], delivery.event["type"], dead_id, delivery.attempts, error)


class _Held:
    """An entry of a batch being delivered: since when this replica holds it (read, claimed or
    held again), whether another replica took it, whether the log dropped it meanwhile."""

    __slots__ = ("delivery", "held_from", "taken", "log_dropped")

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.held_from = delivery.read_at
        self.taken = False
        self.log_dropped = False
