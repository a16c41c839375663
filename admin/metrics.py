"""Adapter from a prometheus_client registry to the `metrics` callable of create_admin_app."""
from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def prometheus_exposition(registry: CollectorRegistry) -> Callable[[], tuple[bytes, str]]:
    """A callable answering (text exposition bytes, content type) for every scrape."""

    def collect() -> tuple[bytes, str]:
        return generate_latest(registry), CONTENT_TYPE_LATEST

    return collect
