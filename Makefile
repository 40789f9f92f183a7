# The two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv when it is missing and install what they need.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.atdata-installed

.PHONY: demo test lint venv system-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[atmosphere,appview,demo,dev]' 'torch==2.13.0'
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

demo: venv system-deps
	$(PY) -m atdata.demo

test: venv system-deps
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check sdk appview tests benchmarks
	$(VENV)/bin/ruff format --check sdk appview tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build dist
