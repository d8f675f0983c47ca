# Plain targets; the README's quick start is `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The torch/torchvision pair that imports on our CI machines (wheels on local disk there).
# GPU hosts override it, e.g. make test TORCH_SPEC="torch==2.9.1 torchvision==0.24.1".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: demo demo-report test test-fast test-core lint venv install-core install-all system-deps bench docs clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.core-installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e .
	touch $@

$(VENV)/.all-installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q $(TORCH_SPEC) -e ".[imaging,test,ray,docs,mi,registry,dev]"
	touch $@ $(VENV)/.core-installed $(VENV)/.docs-installed $(VENV)/.imaging-installed

# The imaging stack (torch, timm, pydicom...) for the whole-product demo.
$(VENV)/.imaging-installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q $(TORCH_SPEC) -e ".[imaging]"
	touch $@ $(VENV)/.core-installed

# The documentation tools (MkDocs, Material, mkdocstrings), on top of the core install.
$(VENV)/.docs-installed: pyproject.toml | $(VENV)/.core-installed
	$(PIP) install -q -e ".[docs]"
	touch $@

install-core: $(VENV)/.core-installed
install-all: $(VENV)/.all-installed

# Debian packages for the browser, PDF (pdftotext) and Quarto-source tests (root on CI; skipped quietly elsewhere).
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || ! command -v pandoc >/dev/null \
	    || ! command -v pdftotext >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver pandoc poppler-utils >/dev/null) \
	      || echo "warning: could not install chromium/pandoc/poppler-utils; browser tests will be skipped"; \
	  else echo "warning: chromium/pandoc missing and not root; browser tests will be skipped"; fi; \
	fi

# The whole product on synthetic data: phantom archive -> model -> DuckDB -> report (reports/demo/).
demo: $(VENV)/.imaging-installed
	$(PY) -m epi_spineage.demo

# The statistics and report only, without torch (the simulator's cohort tables -> reports/demo-report/).
demo-report: install-core
	$(PY) -m epi_spineage.report --out reports/demo-report

test: install-all system-deps lint
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install-all
	$(PY) -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

# The core install's view: torch, timm, pydicom, cv2, ... made unimportable (tests/conftest.py); the tests
# that need the imaging extra skip, everything else must pass.
test-core: install-all
	EPI_SPINEAGE_TEST_CORE_ONLY=1 $(PY) -m pytest -m "not slow and not browser" -p no:cacheprovider $(PYTEST_ARGS)

# ruff (lint + format check) and mypy, configured in pyproject.toml; the same hooks run in pre-commit.
lint: install-all
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install-all
	for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# The documentation site, offline, warnings as errors; open build/site/index.html.
docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir build/site

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
