# Every target builds .venv itself on first use, so each works on a fresh clone.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

export DAGSTER_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := 1
export GX_ANALYTICS_ENABLED := false

.PHONY: demo run test dev bench lint format clean

$(STAMP):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "needs $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)  ## run the main job offline on the sample recordings, embedded database
	$(BIN)/va-signals run --replay examples/recordings

run: $(STAMP)  ## run the main job live against the real services
	$(BIN)/va-signals run

test: $(STAMP)  ## the whole test suite
	$(BIN)/pytest -q

dev: $(STAMP)  ## Dagster UI on http://127.0.0.1:3000 with the runs of `make run`/`make demo`
	$(BIN)/va-signals dev

bench: $(STAMP)  ## benchmarks: prints figures and ratios
	$(BIN)/python -m benchmarks

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
