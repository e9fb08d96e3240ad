# sched: two commands on a fresh machine — `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA := data
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint bench chaos migrate clean

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

# The whole suite. On SQLite by default; with DATABASE_URL / REDIS_URL set it runs against
# those servers too, including the Postgres-only tests.
test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

bench: $(VENV)/.installed
	$(PY) -m tests.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache .mypy_cache .ruff_cache .hypothesis
