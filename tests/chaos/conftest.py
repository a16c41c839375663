from __future__ import annotations


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "chaos: seeded fault-injection run against real processes (-m 'not chaos' skips it)")
