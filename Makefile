# Thin wrappers around pip, jupyter and pytest; README.md shows the plain commands.
#   make lab        create .venv if needed, install, open JupyterLab on the course
#   make test       same set-up, then unit tests + every notebook under nbval
#   make e2e        browser tests (Chromium + Playwright) against JupyterLab and Voila
#   make dashboard  the widget lab as a code-free Voila dashboard
#   make flower     a real Flower deployment on 127.0.0.1, compared with the simulation
#   make bench      run the benchmarks (prints ratios measured side by side)
#   make fuzz       the crypto fuzz tests with many more cases than CI (Hypothesis profile "fuzz")
#   make exercises  regenerate exercises/ from solutions/
#   make lint       ruff over the library, tests and benchmarks
# Install unpinned (newest releases) with:  make test CONSTRAINTS=
# Use another interpreter with:             make test PYTHON=python3.12

PYTHON      ?= python3
EXTRAS      ?= dev,he,flower,e2e
VENV        ?= .venv
CONSTRAINTS ?= constraints.txt
PY          := $(VENV)/bin/python
PIP_C       := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
STAMP       := $(VENV)/.installed$(if $(CONSTRAINTS),-pinned,-unpinned)
# JupyterLab refuses to start as root unless told; containers and CI often run as root.
LAB_ARGS    ?= $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: install lab test test-unit test-notebooks e2e dashboard flower bench fuzz lint execute-notebooks exercises clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q $(PIP_C) -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-*
	touch $@

lab: install
	$(VENV)/bin/jupyter lab $(LAB_ARGS) --ServerApp.root_dir=. notebooks/01_background.ipynb

# The README's test command: unit tests, then every notebook under nbval (lax: a cell fails
# only if it raises, or if it is marked NBVAL_CHECK_OUTPUT and its output changed).
test: install
	$(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider -m "not e2e" tests notebooks solutions

test-unit: install
	$(PY) -m pytest -p no:cacheprovider -m "not e2e" tests

# Browser tests: Playwright drives Debian's Chromium (/usr/bin/chromium) against a real JupyterLab
# and Voila on 127.0.0.1. .ci/run installs Chromium with apt when it is missing.
e2e: install
	$(PY) -m pytest -p no:cacheprovider -m e2e tests/e2e

# Classroom dashboard: the widget lab served by Voila on 127.0.0.1, no code shown.
dashboard: install
	$(VENV)/bin/voila notebooks/dashboard.ipynb --strip_sources=True --Voila.ip=127.0.0.1

# A real Flower deployment on 127.0.0.1 (SuperLink + SuperNodes, TLS), compared with run_fedavg.
flower: install
	$(PY) -m course_lib.deploy --nodes 3 --rounds 5 --compare

test-notebooks: install
	$(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks solutions

# Regenerate exercises/ from solutions/ (student versions; never edit them by hand).
# Never run nbval on exercises/: those notebooks fail by design until a learner answers.
exercises: install
	$(PY) scripts/make_exercises.py

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
