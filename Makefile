# One-command entry points. Each target creates the environment first if needed:
#   make run  [ARGS="--preset smoke --image-dir DIR"]   runs pipeline_runner.py
#   make test                                          runs the test suite
#   make bench                                         prints the benchmark figures
PYTHON_VERSION := 3.10.13
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock setup.py | sha256sum | cut -c1-12)
ARGS ?=
# Test processes (pytest-xdist): one per core on the 2-core reference machine.
# tests/conftest.py groups the tests so that shared fixtures are made once.
TEST_WORKERS ?= 2

# Python 3.10 (TFX 1.16 supports nothing newer): pyenv's build, else python3.10 on PATH.
BOOTSTRAP := $(or $(wildcard $(shell pyenv root 2>/dev/null)/versions/$(PYTHON_VERSION)/bin/python3.10),$(shell command -v python3.10 2>/dev/null))

.PHONY: run test test-fast bench install clean

install: $(STAMP)

$(STAMP): requirements.lock setup.py
	@test -n "$(BOOTSTRAP)" || { echo "error: Python $(PYTHON_VERSION) not found; install it with 'pyenv install $(PYTHON_VERSION)'" >&2; exit 1; }
	@test -x $(PY) || $(BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

run: $(STAMP)
	$(PY) pipeline_runner.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadgroup

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow" -n $(TEST_WORKERS) --dist loadgroup

bench: $(STAMP)
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/serving_latency.py

clean:
	rm -rf $(VENV) outputs
