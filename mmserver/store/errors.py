"""What the store raises; the HTTP layer maps each class to a status."""
from __future__ import annotations


class StoreError(Exception):
    """Base; .title (short) and .description (one sentence for the client)."""

    title = "Store error"

    def __init__(self, description: str, title: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        if title is not None:
            self.title = title


class NotFound(StoreError):
    title = "Not found"


class Forbidden(StoreError):
    title = "Forbidden"


class PlayerBusy(StoreError):
    title = "Player busy"

    def __init__(self, player_id: str, ticket_id: str) -> None:
        super().__init__(f"Player {player_id!r} already holds the live ticket {ticket_id}.")
        self.player_id = player_id
        self.ticket_id = ticket_id


class Conflict(StoreError):
    title = "Conflict"


class RedisUnavailable(StoreError):
    title = "Redis unavailable"
