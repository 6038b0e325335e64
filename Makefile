# Conveniences over the two commands, ./scripts/start and ./scripts/test (which need no make:
# a fresh Debian machine has none).

.PHONY: help run test lint fmt migrate clean distclean

help:
	@echo "make run        start Mailhub (./scripts/start)"
	@echo "make test       lint, format check and the whole test suite (./scripts/test)"
	@echo "make lint       ruff check and ruff format --check"
	@echo "make fmt        ruff format, then ruff check --fix"
	@echo "make migrate    apply database migrations"
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

# The venv, when it is missing or pyproject.toml changed since it was installed.
.venv/.mailhub-pyproject.sha256: pyproject.toml
	./scripts/bootstrap

lint: .venv/.mailhub-pyproject.sha256
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

fmt: .venv/.mailhub-pyproject.sha256
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

migrate:
	./scripts/bootstrap
	./scripts/manage migrate

# Leaves the database and .env alone: the admin password in .env stays the admin's password.
clean:
	rm -rf var .pytest_cache .ruff_cache
	find . -path ./.venv -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf .venv
