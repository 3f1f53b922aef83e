# The two commands of the README. Both create .venv if missing and (re)install the project into it
# whenever pyproject.toml changed; both are safe to run again.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# The book's RNN from scratch (d2l 8.5) with rnn_jax at full length, sequential then random
# iteration, into runs/rnn_scratch-{seq,random}-jax (replaced on every run).
demo: $(STAMP)
	$(PY) -m experiments.rnn_scratch --impl jax --overwrite

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# pytest exits 5 when it collects no test; that is reported, not hidden, and not a failure of make.
# The tests run on as many workers as the machine has cores (pytest-xdist).
test: lint
	@$(PY) -m pytest -n auto; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
