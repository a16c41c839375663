"""Replica bookkeeping: who is alive, for the control plane. Each record has a TTL."""
from __future__ import annotations

import json

import redis

from mmserver.store import keys
from mmserver.store.scripts import Scripts


class Replicas:
    def __init__(self, client: redis.Redis, scripts: Scripts) -> None:
        self._client = client
        self._scripts = scripts

    def record(self, info: dict, ttl_s: float) -> None:
        self._scripts.call("replica_record", [info["id"], json.dumps(info), max(1, int(ttl_s * 1000))])

    def remove(self, replica_id: str) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(keys.replica(replica_id))
        pipe.zrem(keys.REPLICAS, replica_id)
        pipe.execute()

    def list(self) -> list[dict]:
        return [json.loads(info) for info in self._scripts.call("replica_list", [])]
