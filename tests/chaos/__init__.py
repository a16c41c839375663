"""Chaos harness: real redis-server, real mmserver replicas, client traffic and faults, then an
invariant check that no acknowledged ticket was lost, duplicated or stranded.

Run it with `python -m tests.chaos --seed N --duration S --replicas 3 --faults K`.
"""
