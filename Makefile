# Two commands for a fresh machine (python3, make, git): `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8

.PHONY: setup system-deps demo test lint lock bench clean data-docs-assets

setup: $(VENV)/.installed

# The lock file pins every dependency (with hashes); uv installs it in seconds. Bytecode is compiled
# at install: uv does not by default, and without it every process compiles Great Expectations
# and Airflow again (4-5 s per task start where PYTHONDONTWRITEBYTECODE is set).
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python --require-hashes -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

# Debian packages the tests use: LibreOffice (extracts must open there) and Chromium (the dashboard
# is checked in a real browser), with CJK fonts; Redis, socat and iproute2 for the Celery workers in
# network namespaces (tests/dags/test_celery_netns.py). Installed once; skipped when already present.
SYSTEM_PACKAGES := libreoffice-calc-nogui chromium fonts-noto-cjk redis-server socat iproute2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

system-deps:
	@command -v soffice >/dev/null && command -v chromium >/dev/null && fc-list 2>/dev/null | grep -qi "noto.*cjk" \
		&& command -v redis-server >/dev/null && command -v socat >/dev/null && command -v ip >/dev/null \
		|| ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			--no-install-recommends $(SYSTEM_PACKAGES) >/dev/null)

demo: setup
	$(BIN)/onenet demo

test: setup system-deps
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

# Re-resolve the lock files after changing dependencies in pyproject.toml: requirements.lock for
# development (with the dev tools), requirements.prod.lock for the image (no pytest, mypy, ruff),
# constrained to the same versions.
lock: setup
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes \
		--no-header -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra deploy --python-version 3.11 --generate-hashes \
		--no-header -c requirements.lock -o requirements.prod.lock

bench: setup
	$(BIN)/python bench/generate_district.py

# Re-vendor the Data Docs' CSS/JS (pinned npm versions in expectations/data_docs.py) with npm pack.
data-docs-assets: setup
	$(BIN)/python -m expectations.data_docs

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
