# Set-up is idempotent and quick once done: `make run` and `make test` work on a fresh machine.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CHROMIUM ?= /usr/bin/chromium

.PHONY: setup chromium run test lint bench-catalog bench-env clean

setup: chromium $(STAMP)

chromium:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip uninstall -q -y webgym 2>/dev/null || true  # the old name, now webgym-shopping
	rm -rf webgym.egg-info  # the old name's metadata (it mapped agents, benchmarks, leaderboards)
	$(PY) -m pip install -q -e '.[dev,trl,openenv-deps]'
	$(PY) -m pip install -q --no-deps openenv-core==0.3.0  # see the openenv extra in pyproject
	$(VENV)/bin/webgym shop build
	$(VENV)/bin/webgym-bench models fetch
	touch $(STAMP)

# The main job: the rule agent on 20 test tasks in Chromium, recorded, submitted, ranked;
# then every shipped agent (agents/released/) on the same tasks, each submitted (verified by
# replay), so their rows rank beside it. Re-running resumes the same runs (nothing to redo)
# and finds them already on the leaderboard.
QUICKSTART_RUN ?= runs/quickstart-rule-test20
SHIPPED := $(sort $(notdir $(wildcard agents/released/*)))
run: setup
	$(VENV)/bin/webgym-bench run --agent rule --split test --episodes 20 --mode browser \
	  --out $(QUICKSTART_RUN)
	$(VENV)/bin/webgym-bench submit $(QUICKSTART_RUN) --if-new
	@for agent in $(SHIPPED); do \
	  echo "shipped agent $$agent on the same 20 tasks"; \
	  $(VENV)/bin/webgym-bench run --agent $$agent --split test --episodes 20 --mode browser \
	    --out runs/quickstart-$$agent-test20 > runs/quickstart-$$agent-test20.log 2>&1 \
	    || { tail -20 runs/quickstart-$$agent-test20.log; exit 1; }; \
	  $(VENV)/bin/webgym-bench submit runs/quickstart-$$agent-test20 --if-new || exit 1; \
	done
	$(VENV)/bin/webgym-bench leaderboard --split test

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench-catalog: setup
	$(PY) -m webgym_benchmarks.perf.catalog_bench --sizes 10000 100000 --queries 1000

bench-env: setup
	$(PY) -m webgym_benchmarks.perf.env_bench --steps 60 --setup-peer

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
