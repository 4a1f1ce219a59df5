# Vigil: `make run` starts everything on embedded defaults, `make test` runs every test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PACKAGES := shared services/customer services/property services/billing services/credit gateway deploy/runner sandboxes/central_station sandboxes/bureau sandboxes/processor
PYPROJECTS := $(addsuffix /pyproject.toml,$(PACKAGES))
# setuptools prints an "Editable installation" notice (a warning) for each editable package it
# builds: pages of them before anything useful. Silence that message only; real errors still show.
PIP := PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: install run test lint lock clean

install: $(STAMP)

$(STAMP): constraints.txt requirements-dev.txt $(PYPROJECTS)
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade "pip>=24" -c constraints.txt
	$(PIP) -c constraints.txt \
		$(addprefix -e ,$(PACKAGES)) -r requirements-dev.txt
	touch $(STAMP)

run: install
	$(BIN)/vigil-run

test: install
	$(BIN)/python tools/run_tests.py

# ruff check, ruff format --check, mypy and import-linter (also the first suite of `make test`).
lint: install
	$(BIN)/python tools/run_tests.py lint

# Re-pin every dependency after changing a pyproject.toml or requirements-dev.txt.
lock: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' | sed '/^vigil-/d' > constraints.txt

clean:
	rm -rf $(VENV) var
