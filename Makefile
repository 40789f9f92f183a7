# The two commands a newcomer needs: `make demo` and `make test`.
# Both install what they need on first use: system packages (apt), .venv, and the
# local ATProto network (Node 22 + the reference PDS, cached in ~/.cache/atdata).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.atdata-installed
PYTEST_ARGS ?=

.PHONY: demo test check lint venv have-venv system-deps devnet peer-venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[atmosphere,appview,demo,dev,ray,dask]' 'torch==2.13.0' 'torchdata==0.11.0'
	touch $(STAMP)

venv: $(STAMP)

# `lint` and `check` use the venv as it is once it has been installed: they install only into a
# venv that never was (after changing pyproject.toml's dependencies, run `make venv`).
have-venv:
	@test -f $(STAMP) || $(MAKE) --no-print-directory venv

system-deps:
	bash scripts/install-system-deps.sh

# Node 22 + @atproto/pds + @did-plc/server in $$ATDATA_CACHE/devnet: about 3 minutes
# the first time (compiling better-sqlite3), a quick check afterwards.
devnet: venv
	$(PY) -m atdata.cli devnet install

# The atdata 0.7 peer in its own Python 3.12 venv (owned by the samples area).
peer-venv:
	@if [ -f scripts/ensure-peer-venv.sh ]; then bash scripts/ensure-peer-venv.sh >/dev/null; fi

demo: system-deps venv devnet
	$(PY) -m atdata.demo

# pytest exits with 5 when it collects no tests; that is not a failure here.
test: system-deps venv devnet peer-venv
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

# The fast subset, while working: no devnet, PostgreSQL, Chromium, atdata 0.7 peer or Ray
# cluster (tests using their fixtures carry those markers, see tests/conftest.py), nothing
# marked slow; on all cores when pytest-xdist is installed (the `dev` extra).
CHECK_MARKERS := not devnet and not postgres and not browser and not peer and not ray and not slow
check: have-venv
	$(PY) -m pytest -q -m "$(CHECK_MARKERS)" $$($(PY) -c 'import xdist; print("-n auto")' 2>/dev/null) $(PYTEST_ARGS)

# Style and types; the versions of ruff and mypy are pinned in the `dev` extra, mypy's
# settings (which files, per-module rules) are in pyproject.toml.
lint: have-venv
	$(VENV)/bin/ruff check sdk appview tests benchmarks
	$(VENV)/bin/ruff format --check sdk appview tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
