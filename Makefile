# sched: two commands on a fresh machine — `make run` and `make test` (`make test-fast` for
# the quick tiers while you work).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA := data
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-fast lint bench chaos migrate clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(DATA)/secret_key:
	mkdir -p $(DATA)
	$(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))' > $@
	chmod 600 $@

# Set up and run the engine with a demo worker on the embedded defaults (SQLite, in-memory
# channel layer). Prints the API token and how to start each demo workflow.
run: $(VENV)/.installed $(DATA)/secret_key
	SCHED_SECRET_KEY=$$(cat $(DATA)/secret_key) $(PY) manage.py migrate --verbosity 0
	SCHED_SECRET_KEY=$$(cat $(DATA)/secret_key) $(PY) manage.py runlocal --host $(HOST) --port $(PORT)

migrate: $(VENV)/.installed $(DATA)/secret_key
	SCHED_SECRET_KEY=$$(cat $(DATA)/secret_key) $(PY) manage.py migrate

# The whole suite but the chaos tests. On SQLite by default; with DATABASE_URL / REDIS_URL set
# it runs against those servers too, including the Postgres-only tests.
test: $(VENV)/.installed
	$(PY) -m pytest -m "not chaos" $(PYTEST_ARGS)

# The quick tiers (tests/conftest.py): the core, the sdk, the services and the API, in-process
# on SQLite; no engine or worker processes. Under a minute.
test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "(core or sdk or services or api) and not e2e and not chaos" \
		tests/core tests/sdk tests/services tests/api $(PYTEST_ARGS)

# The chaos suite and the fuzzers (docs/reliability.md): kills, pauses and restarts engines,
# workers and servers, and throws hostile input at both doors. CHAOS_WORKFLOWS (500),
# CHAOS_KILLS (5) and CHAOS_SEED size and replay it; FUZZ_EXAMPLES (300) and
# SCHEMATHESIS_EXAMPLES (100) bound the fuzzers. Run it with DATABASE_URL and REDIS_URL set to
# cover failover and server restarts (as root: it restarts both servers). The figures of the
# run are printed at the end (and kept in $(DATA)/chaos-figures.json).
chaos: $(VENV)/.installed
	rm -f $(DATA)/chaos-figures.json
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} $(PY) -m pytest -m "chaos or fuzz" tests/chaos tests/fuzz \
		$(PYTEST_ARGS)
	@cat $(DATA)/chaos-figures.json

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

# sched on SQLite and PostgreSQL + Redis, then DBOS and Celery on the same servers (their
# virtualenvs are made once under bench-results/venvs/). Options through BENCH_ARGS, e.g.
#   make bench BENCH_ARGS="--baseline main"     also run sched's workloads at commit main
#   make bench BENCH_ARGS="--w1 100 --w2 20 --w3 0 --w4 0 --peers none"
bench: $(VENV)/.installed
	$(PY) -m tests.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache .mypy_cache .ruff_cache .hypothesis
