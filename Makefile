# activity-sync: `make run` (embedded default) and `make test` work on a fresh machine with
# Python 3.11+, Java 17 and Maven; everything else (virtualenv, Kafka jars) is fetched here.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run demo test lint-imports bench chaos golden broker-fetch broker-start broker-stop postgres-install browser-install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,all]'
	touch $(STAMP)

install: $(STAMP)

broker-fetch: install
	$(PY) -m activity_sync.devtools.broker fetch

## The embedded default: local Kafka, topics, config, workers, fake CRM, the seed's activities.
run: broker-fetch
	$(PY) -m activity_sync.cli run $(if $(CONFIG),--config $(CONFIG))

## Same, but exits once the seed's activities have come out enriched.
demo: broker-fetch
	$(PY) -m activity_sync.cli run --max 5 --exit

## PostgreSQL (Debian's package) for the PostgreSQL activity table's tests, bench and example: installed if missing.
postgres-install: install
	$(PY) -m activity_sync.devtools.postgres install

## Debian's Chromium for the admin page's browser tests (Playwright drives it): installed if missing.
browser-install: install
	$(PY) -m activity_sync.devtools.browser install

## The layer rules first ([tool.importlinter] in pyproject.toml), then the tests.
lint-imports: install
	$(VENV)/bin/lint-imports

test: broker-fetch postgres-install browser-install lint-imports
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

## Regenerate the providers' golden request files after a deliberate change to what they send.
golden: install
	UPDATE_GOLDEN=1 $(PY) -m pytest -q -p no:cacheprovider tests/test_provider_*.py -k golden

bench: broker-fetch postgres-install
	$(PY) -m bench $(BENCH_ARGS)

broker-start: broker-fetch
	$(PY) -m activity_sync.devtools.broker start

broker-stop: install
	$(PY) -m activity_sync.devtools.broker stop

clean:
	rm -rf var .pytest_cache

## The fault suite against real brokers (not in CI: about 25 minutes): kills, broker restart, failover, outage, 429 storm, slow CRM, a million-record backlog.
chaos: broker-fetch
	$(PY) -m bench.chaos $(CHAOS_ARGS)
