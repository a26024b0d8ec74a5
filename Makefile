# Thin wrappers around pip, jupyter and pytest; README.md shows the plain commands.
#   make lab        create .venv if needed, install, open JupyterLab on the course
#   make test       same set-up, then unit tests + every notebook under nbval
#   make test-min   unit tests in .venv-min, every runtime dependency at its lower bound
#                   (constraints-min.txt; recreated from scratch each time)
#   make e2e        browser tests (Chromium + Playwright) against JupyterLab and Voila
#   make book       the course website, both editions, from the committed notebooks (offline,
#                   nothing executed): build/book/index.html (BOOK_ARGS=--no-solutions)
#   make dashboard  the widget lab as a code-free Voila dashboard (DASHBOARD_PORT, DASHBOARD_ARGS;
#                   DASHBOARD_LANG=zh: the Chinese dashboard, notebooks/zh/dashboard.ipynb)
#   make flower     a real Flower deployment on 127.0.0.1, compared with the simulation
#                   (FLOWER_ARGS='--nodes 3 --rounds 1 --secure-agg --compare': Flower's SecAgg+)
#   make bench      run the benchmarks (prints ratios measured side by side)
#   make fuzz       the crypto fuzz tests with many more cases than CI (Hypothesis profile "fuzz")
#   make exercises  regenerate exercises/ from solutions/
#   make editions   copy code and outputs into the Chinese edition; editions-check: is it in step?
#   make lint       ruff over the library, tests and benchmarks
#   make nbgrader-env    .venv-nbgrader: nbgrader on top of .venv (see TEACHING.md)
#   make nbgrader-check  nbgrader generate_assignment -> autograde on one solution and one
#                        untouched exercise; fails unless they score full marks and zero
#   make autograde       nbgrader autograde, after checking its kernel imports course_lib
# Install unpinned (newest releases) with:  make test CONSTRAINTS=
# Use another interpreter with:             make test PYTHON=python3.12
# Extra JupyterLab options:                 make lab LAB_ARGS="--no-browser --port 8890"
# The dashboard elsewhere:                  make dashboard DASHBOARD_PORT=8900 DASHBOARD_ARGS=--no-browser

PYTHON      ?= python3
EXTRAS      ?= dev,he,flower,e2e,book
VENV        ?= .venv
CONSTRAINTS ?= constraints.txt
PY          := $(VENV)/bin/python
PIP_C       := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
STAMP       := $(VENV)/.installed$(if $(CONSTRAINTS),-pinned,-unpinned)
# JupyterLab refuses to start as root unless told; containers and CI often run as root. That
# part is automatic; LAB_ARGS adds to it and never replaces it.
LAB_AUTO_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root,)
LAB_ARGS    ?=
# JupyterLab's settings for this venv (no "official Jupyter news?" pop-up, no update check).
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
DASHBOARD_PORT ?= 8866
DASHBOARD_ARGS ?=
# en or zh (not LANG, which the shell sets for its locale); the lab reads it as COURSE_LANG.
DASHBOARD_LANG ?= en
NBGRADER_VENV  ?= .venv-nbgrader
NBGRADER       ?= nbgrader==0.9.6

.PHONY: editions editions-check nbgrader-env nbgrader-check autograde install lab test test-min test-unit test-notebooks e2e dashboard flower bench fuzz lint execute-notebooks exercises clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q $(PIP_C) -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-*
	touch $@

lab: install $(LAB_SETTINGS)
	$(VENV)/bin/jupyter lab $(LAB_AUTO_ARGS) $(LAB_ARGS) --ServerApp.root_dir=. \
	    notebooks/01_background.ipynb

$(LAB_SETTINGS): jupyter/overrides.json | install
	mkdir -p $(dir $@)
	cp jupyter/overrides.json $@

# The README's test command: unit tests, then every notebook under nbval (lax: a cell fails
# only if it raises, or if it is marked NBVAL_CHECK_OUTPUT and its output changed).
test: install
	$(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider -m "not e2e" --ignore=notebooks/zh tests notebooks solutions

# The lower bounds in pyproject.toml, tested: a fresh venv with every runtime dependency pinned
# at its bound (constraints-min.txt) plus the dev extra; unit tests only (optional extras absent,
# their tests skip). tests/test_imports.py imports every module there.
MIN_VENV ?= .venv-min
test-min:
	rm -rf $(MIN_VENV)
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install --disable-pip-version-check -q -c constraints-min.txt -e '.[dev]'
	$(MIN_VENV)/bin/python -m pytest -p no:cacheprovider -m "not e2e" tests

test-unit: install
	$(PY) -m pytest -p no:cacheprovider -m "not e2e" tests

# Browser tests: Playwright drives Debian's Chromium (/usr/bin/chromium) against a real JupyterLab
# and Voila on 127.0.0.1. .ci/run installs Chromium with apt when it is missing.
e2e: install
	$(PY) -m pytest -p no:cacheprovider -m e2e tests/e2e

# Classroom dashboard: the widget lab served by Voila on 127.0.0.1, no code shown.
dashboard: install
	$(if $(filter-out en zh,$(DASHBOARD_LANG)),$(error DASHBOARD_LANG must be en or zh, got '$(DASHBOARD_LANG)'))
	COURSE_LANG=$(DASHBOARD_LANG) $(VENV)/bin/voila \
	    notebooks/$(if $(filter zh,$(DASHBOARD_LANG)),zh/,)dashboard.ipynb --strip_sources=True \
	    --Voila.ip=127.0.0.1 --Voila.port=$(DASHBOARD_PORT) $(DASHBOARD_ARGS)

# The grading environment: a venv that sees everything in .venv (the course and its
# dependencies, nothing installed twice) plus nbgrader, kept out of the learners' JupyterLab.
nbgrader-env: $(NBGRADER_VENV)/.installed

$(NBGRADER_VENV)/.installed: $(STAMP)
	$(PY) scripts/nbgrader_check.py --setup --venv $(NBGRADER_VENV) --nbgrader '$(NBGRADER)'
	touch $@

nbgrader-check: nbgrader-env
	$(PY) scripts/nbgrader_check.py --venv $(NBGRADER_VENV)

# nbgrader autograde, after checking that its kernel imports course_lib (else every
# submission scores 0 silently):  make autograde COURSE_DIR=~/grading ASSIGNMENT=privacy
ASSIGNMENT ?= privacy
COURSE_DIR ?= .
autograde: nbgrader-env
	$(PY) scripts/nbgrader_check.py --venv $(abspath $(NBGRADER_VENV)) \
	    --autograde $(ASSIGNMENT) --course $(COURSE_DIR)

# A real Flower deployment on 127.0.0.1 (SuperLink + SuperNodes, TLS), compared with run_fedavg.
FLOWER_ARGS ?= --nodes 3 --rounds 5 --compare
flower: install
	$(PY) -m course_lib.deploy $(FLOWER_ARGS)

test-notebooks: install
	$(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks solutions

# The Chinese edition: copy code cells and outputs from the English notebooks into notebooks/zh/
# and solutions/zh/ (translations untouched); editions-check fails, naming each cell, when a
# translation is missing or older than its English cell.
editions: install
	$(PY) scripts/sync_editions.py
	$(PY) scripts/make_exercises.py

editions-check: install
	$(PY) scripts/sync_editions.py --check

# Regenerate exercises/ from solutions/ (student versions; never edit them by hand).
# Never run nbval on exercises/: those notebooks fail by design until a learner answers.
exercises: install
	$(PY) scripts/make_exercises.py

# The course website: Sphinx + MyST-NB render the committed notebooks of both editions into
# build/book/en/ and build/book/zh/ (same file names, a language switch on every page) and
# build/book/index.html. No notebook is executed and nothing is fetched.
BOOK_ARGS ?=
.PHONY: book
book: install
	$(PY) book/build.py $(BOOK_ARGS)

bench: install
	for script in benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -p no:cacheprovider tests/crypto/test_fuzz.py

lint: install
	$(VENV)/bin/ruff check course_lib tests benchmarks scripts

# Re-execute the committed notebooks in place (maintainers, after changing a chapter).
execute-notebooks: install
	$(PY) scripts/execute_notebooks.py notebooks/*.ipynb solutions/*.ipynb
	$(PY) scripts/make_exercises.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
