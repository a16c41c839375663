PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHAOS_SEED ?= 4242

.PHONY: run test venv clean chaos soak bench bench-quick

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
