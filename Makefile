# Everything bootstraps .venv itself: a fresh machine needs only Python 3.11, pip, make and git.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# `make demo` needs the CLI only (no SAM CLI, moto, cfn-lint, mypy: a third of the size); `make test` adds dev.
CLI_STAMP := $(VENV)/.installed-cli
# checkov and bandit pin libraries the SAM CLI also pins, differently: they get a venv of their own.
TOOLS  := $(VENV)/tools
TOOLS_STAMP := $(TOOLS)/.installed
LAKE   ?= demo-lake

export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: venv demo test lint typecheck security unit future integration infra bench chaos build clean template \
  system grafana

venv: $(STAMP)

$(CLI_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP): $(CLI_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(TOOLS_STAMP): Makefile | $(STAMP)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/bin/python -m pip install --quiet 'checkov>=3.2,<4' 'bandit>=1.8,<2'
	touch $@

demo: $(CLI_STAMP)
	$(BIN)/auditlake demo --lake $(LAKE)

# The faketime pass runs beside the main pass, one on each of CI's 2 cores (within its 20 minutes);
# its output is printed after the main pass's, and either failing fails the target.
test: system lint typecheck security
	@$(MAKE) --no-print-directory future > .future.log 2>&1 & late=$$!; \
	CHECKOV=$(TOOLS)/bin/checkov $(BIN)/python -m pytest -q tests; main=$$?; \
	wait $$late; future=$$?; echo "---- make future (the suite 400 days ahead)"; cat .future.log; rm -f .future.log; \
	test $$main -eq 0 -a $$future -eq 0

# What the suite needs beyond Python: libfaketime (the faketime pass) and headless Chromium (the report
# is tested in a real browser). Installed with apt-get when missing and we are root; else the command to run.
SYSTEM_PACKAGES := faketime chromium
system:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $$missing (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "make test needs: sudo apt-get install $$missing"; exit 1; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache  # the import direction between stages ([tool.importlinter])

# No high-severity finding in the shipped code (template.yaml: checkov, in tests/infra).
security: $(TOOLS_STAMP)
	$(TOOLS)/bin/bandit -q -r layers/core/auditlake functions --severity-level high

typecheck: $(STAMP)
	$(BIN)/mypy layers/core/auditlake bench
	for f in functions/*/app.py; do $(BIN)/mypy "$$f" || exit 1; done  # each adapter is its own `app`

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

# The suite again with the system clock 400 days ahead (libfaketime, Debian's `faketime`): no test
# and no expiry may depend on the date the suite runs. .ci/run installs faketime when missing.
# Not the Events watch scenarios, which libfaketime 0.9.10 itself breaks: CPython's timed lock waits
# (Condition.wait(timeout) in the fake API server's watch loop) pass a deadline on the faked
# CLOCK_MONOTONIC to sem_clockwait, which libfaketime does not intercept, so they never time out
# (FAKETIME_DONT_FAKE_MONOTONIC=1 instead makes every time.sleep fail with EINVAL). Their clocks are
# injected and start at the real now; they run in the main pass.
# -m: the synchronised libfaketimeMT. The plain library races between threads (moto server's handler
# threads, the main thread importing) and once segfaulted a clean-clone run inside select().
# Not the fault-injection model either (tests/integration/test_chaos.py): its clock is the model's own,
# time-machine travelling from the real now and moved hours per example, so +400 days would only run
# the same model a second time.
WATCHING := tests/integration/test_poller.py tests/integration/test_poll_cli.py tests/integration/test_events_poller_lambda.py \
  tests/integration/test_poller_faults.py
OWN_CLOCK := tests/integration/test_chaos.py
future: $(STAMP)
	@command -v faketime >/dev/null || { echo "faketime is not installed: apt-get install faketime"; exit 1; }
	@# Its own temporary directory: pytest's cleanup of the shared one, 400 days ahead, would take the main
	@# pass's live directories for stale ones.
	timeout 1000 faketime -m -f +400d $(BIN)/python -m pytest -q -p no:cacheprovider --basetemp=.pytest-future \
	  tests/unit tests/integration tests/attacks \
	  $(addprefix --deselect ,$(WATCHING) $(OWN_CLOCK))

integration: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration

infra: $(STAMP) $(TOOLS_STAMP)
	CHECKOV=$(TOOLS)/bin/checkov $(BIN)/python -m pytest -q tests/infra

bench: $(STAMP)
	$(BIN)/python bench/bench.py

# The fault-injection model (tests/chaos) for MINUTES under AWS/Kubernetes faults, kills and redeliveries.
# SEED empty: a random one. bench/chaos.py prints the seed first (stderr: `make chaos SEED=<it>` replays)
# and ends with one JSON line (lost, duplicates, acknowledged_without_store, verify_ok...); exit 1 when an
# invariant failed. `make test` runs a short fixed-seed pass of the same model (test_chaos.py).
SEED    ?=
MINUTES ?= 3
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py $(if $(SEED),--seed $(SEED)) --minutes $(MINUTES)

# sam runs the per-resource Makefiles (BuildMethod: makefile) with this PATH, so they use the venv's pip.
build: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sam build --template-file template.yaml

clean:
	rm -rf $(VENV) .aws-sam $(LAKE) .bench .pytest_cache .pytest-future .mypy_cache .ruff_cache

# The Grafana dashboard (infra/grafana) is generated from the named queries and the report's queries.
grafana: $(CLI_STAMP)
	$(BIN)/python -m auditlake.report.grafana --out infra/grafana/auditlake.json

# template.yaml's Glue tables and named queries are generated from model.py and infra/athena.
template: $(STAMP)
	$(BIN)/python tools/sync_template.py
