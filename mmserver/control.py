"""The control plane's object: what an operator may ask of one replica (mmserver_admin's Control).

The admin routes (admin/resources.py) call these methods and send back what they return. Each
acts on the replica's components (replica.py) and logs what an operator changed at WARNING:
drains, stops, matches finished and players released are what a post-mortem looks for.
"""
from __future__ import annotations

import logging
import time

from mmserver import __version__
from mmserver.replica import PUBLIC_LISTENER, Replica
from mmserver.shutdown import ADMIN, EXIT_RESTART
from mmserver.store.deliveries import Deliveries
from mmserver_admin.resources import WebhooksNotConfigured

logger = logging.getLogger(__name__)

OPERATOR_FINISH_REASON = "finished by operator"  # the reason a match ended from mmadmin carries


class ControlPlane:
    def __init__(self, replica: Replica) -> None:
        self._replica = replica

    # --- the replica's lifecycle ---

    def request_shutdown(self, reason: str) -> dict:
        shutdown = self._replica.shutdown
        if not shutdown.request(f"admin shutdown: {reason}", EXIT_RESTART, ADMIN):
            logger.info("admin shutdown asked while already stopping: %s", reason)
        return {"state": "stopping", "reason": shutdown.reason, "exit_status": shutdown.exit_status}

    def drain(self) -> dict:
        with self._replica.readiness.changing() as readiness:
            if readiness.drain():
                logger.warning("draining on operator request: new tickets refused, readiness 503")
                self._replica.notifier.status("draining: new tickets refused")
            return {"state": readiness.state, "accepting_tickets": False}

    def undrain(self) -> dict:
        replica = self._replica
        # Held until the answer is built: the stop sequence's own change (and its STOPPING line
        # to systemd) comes wholly before or wholly after this one.
        with replica.readiness.changing() as readiness:
            # A stop already requested counts as under way: its sequence marks the readiness soon.
            undrained = None if replica.shutdown.is_set() else readiness.undrain()
            if undrained is None:
                # The stop sequence is not undone: the answer says so and nothing changes.
                logger.warning("undrain refused: the replica is stopping (%s)", replica.shutdown.reason)
                return {"state": "stopping", "accepting_tickets": False, "reason": replica.shutdown.reason}
            if undrained:
                logger.warning("undrained on operator request: new tickets accepted again")
                replica.notifier.status(f"ready: replica {replica.replica_id}")
            ready, why = readiness.check()
            # Ready again only if Redis answers; readiness names what is missing otherwise.
            return {"state": readiness.state, "accepting_tickets": True, "ready": ready, "readiness": why}

    def status(self) -> dict:
        replica = self._replica
        http, waiters = replica.http, replica.waiters
        ready, readiness = replica.readiness.check()
        result: dict = {
            "replica": replica.replica_id,
            "version": __version__,
            "state": replica.readiness.state,
            "reason": replica.shutdown.reason,
            "uptime_s": round(time.time() - replica.started_at, 3),
            "ready": ready,
            "readiness": readiness,
            "workers": {
                "http": {"alive": bool(http and http.is_alive()),
                         # The public listener only: the status request itself is on the admin one.
                         "in_flight": http.in_flight(PUBLIC_LISTENER) if http else 0,
                         "long_polls": waiters.waiting if waiters else 0},
                "scheduler": replica.scheduler.status() if replica.scheduler else None,
                "subscriber": replica.subscriber.status() if replica.subscriber else None,
                **({"webhooks": replica.webhooks.status()} if replica.webhooks else {}),
            },
            # This replica's ticket view cache (store/viewcache.py); None when it is off.
            "view_cache": replica.view_cache.status() if replica.view_cache is not None else None,
        }
        if replica.store_status is not None:
            # Redis away or frozen: the status still answers within STATUS_READ_WAIT_S, with the
            # last stats that arrived (stats_age_s old) and why fresh ones are missing.
            reading = replica.store_status.get()
            if reading.value is not None:
                result.update(reading.value)
            if not reading.fresh:
                result["store_error"] = reading.error
                result["stats_age_s"] = reading.age_s
        return result

    # --- matches and players ---

    def match(self, match_id: str) -> dict:
        return self._replica.store.match(match_id)

    def running_matches(self, limit: int) -> dict:
        return self._replica.store.assigned_matches(limit)

    def finish_match(self, match_id: str) -> dict:
        answer = self._replica.store.finish_match(match_id, reason=OPERATOR_FINISH_REASON)
        logger.warning("match %s finished on operator request", match_id)
        return answer

    def player(self, player_id: str) -> dict:
        return self._replica.store.player(player_id)

    def release_player(self, player_id: str) -> dict:
        answer = self._replica.store.release_player(player_id)
        logger.warning("player %s released on operator request", player_id)
        return answer

    # --- webhook dead letters (WebhooksNotConfigured is a 404) ---

    def _dead_letters(self) -> Deliveries:
        if self._replica.dead_letters is None:
            raise WebhooksNotConfigured()
        return self._replica.dead_letters

    def dead_letters(self, after: str | None, limit: int) -> dict:
        return self._dead_letters().dead_letters(after, limit)

    def replay_dead_letters(self, ids: list[str] | None) -> dict:
        answer = self._dead_letters().replay(ids)
        logger.warning("webhooks: %d dead letters replayed on operator request", answer["replayed"])
        return answer

    def discard_dead_letters(self, ids: list[str] | None) -> dict:
        answer = self._dead_letters().discard(ids)
        logger.warning("webhooks: %d dead letters discarded on operator request", answer["discarded"])
        return answer
