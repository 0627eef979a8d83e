# The README's commands. `make demo` and `make test` set everything up themselves.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo serve test lint bench clean

setup:
	@scripts/setup.sh

demo: setup
	$(BIN)/gridops demo

serve: setup
	$(BIN)/gridops serve

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy spatial layers api map_ui etl

# the browser tests need Debian's chromium and CJK fonts (for the screenshots' labels); the
# QGIS test needs Debian's QGIS (python3-qgis with its providers, for /usr/bin/python3)
test:
	@GRIDOPS_EXTRA_APT="chromium fonts-noto-cjk python3-qgis qgis-providers" scripts/setup.sh
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy spatial layers api map_ui etl
	$(BIN)/pytest -q

bench:
	@GRIDOPS_EXTRA_APT="wrk chromium fonts-noto-cjk" scripts/setup.sh
	$(BIN)/python -m benchmarks $(BENCH_ARGS)
	$(BIN)/python -m benchmarks.owner
	$(BIN)/python -m benchmarks.cli_resolve $(if $(filter --quick,$(BENCH_ARGS)),--rows 200000 --repeats 1)
	$(BIN)/python -m benchmarks.grid_import $(if $(filter --quick,$(BENCH_ARGS)),--grids 20000)
	$(BIN)/python -m benchmarks.layer_import $(if $(filter --quick,$(BENCH_ARGS)),--assets 100000)
	$(BIN)/python -m benchmarks.planning $(if $(filter --quick,$(BENCH_ARGS)),--grids 20000)
	$(BIN)/python -m benchmarks.intake $(filter --quick,$(BENCH_ARGS))
	$(BIN)/python -m benchmarks.maps $(filter --quick,$(BENCH_ARGS))
	$(BIN)/python -m benchmarks.soak $(filter --quick,$(BENCH_ARGS))
	$(BIN)/python -m benchmarks.impact $(filter --quick,$(BENCH_ARGS))
	$(BIN)/python -m benchmarks.ogc $(filter --quick,$(BENCH_ARGS))
	$(BIN)/python -m benchmarks.tiles $(filter --quick,$(BENCH_ARGS))
	$(BIN)/python -m benchmarks.wall_render $(filter --quick,$(BENCH_ARGS))

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis test-artifacts
