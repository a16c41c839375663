"""Everything that touches Redis: tickets, loading sessions, servers, deadlines, replicas.

The HTTP layer imports only the names of the contract (Store and the errors); the matchmaker
tick also uses Store's tick methods and the result types below. Key layout: keys.py.
"""
from mmserver.store.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PlayerBusy,
    RedisUnavailable,
    StoreError,
)
from mmserver.store.sessions import ClaimResult, DeadlineCounts
from mmserver.store.store import Store

__all__ = [
    "ClaimResult",
    "Conflict",
    "DeadlineCounts",
    "Forbidden",
    "NotFound",
    "PlayerBusy",
    "RedisUnavailable",
    "Store",
    "StoreError",
]
