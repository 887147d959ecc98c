# circuitft developer entry points. `make test` alone works on a fresh clone (it installs first).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install lock test test-slow lint format demo clean

install: $(STAMP)

# Exact versions from requirements.lock (what CI tests; torch is the CPU build where pip offers it), then
# circuitft itself without resolving anything again.
$(STAMP): pyproject.toml requirements.lock
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-deps -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

# Rewrite requirements.lock from the versions installed in .venv (after changing a dependency).
lock: install
	$(BIN)/python tools/lock.py > requirements.lock.tmp && mv requirements.lock.tmp requirements.lock

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

demo: install
	@if [ -e runs/demo/checkpoints/last.ckpt ]; then \
	  echo "runs/demo already holds the demo (resume an interrupted one: $(BIN)/circuitft fit --config configs/demo.yaml --ckpt_path last;"; \
	  echo " start over: make clean && make demo)"; \
	else $(BIN)/circuitft fit --config configs/demo.yaml; fi
	$(BIN)/circuitft report runs/demo --out runs/demo/report
	$(BIN)/python tools/demo_results.py runs/demo --out docs/results/demo.json
	@echo ""
	@echo "The demo's report:  runs/demo/report/index.html  (open it in a browser; figures and CSV tables beside it)"
	@echo "TensorBoard:        $(BIN)/tensorboard --logdir runs/demo"
	@echo "The guide's numbers: docs/results/demo.json (git diff docs/results/ shows whether this run reproduced them)"

clean:
	rm -rf runs lightning_logs
