# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
export PYTHONDONTWRITEBYTECODE = 1

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

.PHONY: install run test test-sqlite test-postgres bench audit demo
install: $(BIN)/.installed

# The server on the embedded defaults: SQLite, in-process pub/sub and scheduler, WeChat sandbox.
run: install
	MARKET_LOG_FORMAT=$${MARKET_LOG_FORMAT:-text} $(BIN)/python -m server

# The whole suite on SQLite, then again on PostgreSQL (TEST_DATABASE_URL) with Redis (TEST_REDIS_URL).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
test: install
	$(BIN)/python -m pytest -q
	TEST_DATABASE_URL=$(TEST_DATABASE_URL) TEST_REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python -m pytest -q
	cd miniprogram && npm test

# The Mini Programs (docs/miniprogram.md): their JavaScript tooling, exactly as locked in
# miniprogram/package-lock.json, is part of `install` when Node 20 and npm are there (`make run`
# needs only Python); `npm test` checks the shared copies, lints JS and WXML, compiles every
# template with wcc, type-checks against the API types, renders every page and component, and
# runs the four journeys against a real server.
MP_MODULES = miniprogram/node_modules/.package-lock.json
install: $(MP_MODULES)
$(MP_MODULES): miniprogram/package-lock.json
	@if command -v npm >/dev/null; then cd miniprogram && npm ci --no-audit --no-fund && touch node_modules/.package-lock.json; \
	else echo "npm not found: the Mini Programs' tooling needs Node 20 and npm (docs/miniprogram.md)"; fi

.PHONY: test-miniprogram
test-miniprogram: install
	cd miniprogram && npm test

test-sqlite: install
	$(BIN)/python -m pytest -q

test-postgres: install
	TEST_DATABASE_URL=$(TEST_DATABASE_URL) TEST_REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m bench

audit: install
	$(BIN)/python -m server ledger-audit

# A short marketplace day against its own server (SQLite, sandbox, timers in seconds).
demo: install
	$(BIN)/python -m demo
