# Conveniences over the two commands, ./scripts/start and ./scripts/test (which need no make:
# a fresh Debian machine has none).

.PHONY: help run test lint fmt typecheck lock migrate clean distclean

help:
	@echo "make run        start Mailhub (./scripts/start)"
	@echo "make test       lint, format check and the whole test suite (./scripts/test)"
	@echo "make lint       ruff check and ruff format --check"
	@echo "make fmt        ruff format, then ruff check --fix"
	@echo "make typecheck  mypy over the tree (configured in pyproject.toml)"
	@echo "make lock       rewrite requirements/*.txt from pyproject.toml (LOCK_ARGS=--upgrade: newest)"
	@echo "make migrate    apply database migrations"
	@echo "make monitoring Prometheus for ./scripts/start's stack, on 127.0.0.1:9090 (./scripts/monitoring)"
	@echo "make dashboard-snapshot  the Grafana dashboard's panels as PNGs, from that Prometheus"
	@echo "make clean      remove var/ (captured mail, static files, beat schedule, demo key) and caches"
	@echo "make distclean  clean, and remove .venv too"

run:
	./scripts/start

test:
	./scripts/test

# The benchmark (README "Measured"); arguments in BENCH_ARGS, e.g. BENCH_ARGS="--messages 2000".
.PHONY: bench
bench:
	./scripts/bench $(BENCH_ARGS)

# The fault-injection suite (README "Guarantees and failure behaviour"): kills workers, stops
# RabbitMQ, restarts PostgreSQL; pytest arguments in CHAOS_ARGS, e.g. CHAOS_ARGS="-k smtp".
.PHONY: chaos
chaos:
	./scripts/chaos $(CHAOS_ARGS)

# Prometheus (Debian's package, installed when missing) scraping ./scripts/start's stack with the
# jobs and alert rules of deploy/prometheus/ (README "Monitoring"); in the foreground.
.PHONY: monitoring dashboard-snapshot
monitoring:
	./scripts/monitoring

# Every panel of deploy/grafana/mailhub-dashboard.json drawn from that Prometheus's data, one PNG
# each and one of them all, in var/dashboard-snapshot/ (matplotlib: the bench extra). Arguments in
# SNAPSHOT_ARGS, e.g. SNAPSHOT_ARGS="--minutes 5 --grid docs/monitoring/dashboard.png".
dashboard-snapshot:
	./scripts/bootstrap --bench
	.venv/bin/python -m monitoring snapshot $(SNAPSHOT_ARGS)

# The venv, when it is missing or a pyproject.toml or the dev lock changed since it was installed.
.venv/.mailhub-install.sha256: pyproject.toml clients/python/pyproject.toml requirements/dev.txt
	./scripts/bootstrap

lint: .venv/.mailhub-install.sha256
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

fmt: .venv/.mailhub-install.sha256
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

typecheck: .venv/.mailhub-install.sha256
	.venv/bin/mypy

# The lock files, with every file's hash, for Python 3.11 on any platform. Production's
# (runtime.txt) holds the dependencies alone; the dev lock adds the [dev] and [run] extras at
# production's versions (-c), and ./scripts/bench's (bench.txt) the [bench] extra at the dev
# lock's. Pins already in a lock stay unless pyproject.toml excludes them or LOCK_ARGS says
# otherwise (--upgrade, --upgrade-package NAME). tests/unit/test_lock.py fails while
# pyproject.toml and the locks disagree.
LOCK_FLAGS = --quiet --no-config --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" $(LOCK_ARGS)
lock: .venv/.mailhub-install.sha256
	.venv/bin/uv pip compile pyproject.toml $(LOCK_FLAGS) -o requirements/runtime.txt
	.venv/bin/uv pip compile pyproject.toml --extra dev --extra run -c requirements/runtime.txt \
		$(LOCK_FLAGS) -o requirements/dev.txt
	.venv/bin/uv pip compile pyproject.toml --extra dev --extra run --extra bench \
		-c requirements/dev.txt $(LOCK_FLAGS) -o requirements/bench.txt

migrate:
	./scripts/bootstrap
	./scripts/manage migrate

# Leaves the database and .env alone: the admin password in .env stays the admin's password.
clean:
	rm -rf var .pytest_cache .ruff_cache .mypy_cache
	find . -path ./.venv -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf .venv
