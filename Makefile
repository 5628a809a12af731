# Two entry points (see README): `make demo` and `make test`. Both create .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch first, pinned: it is served from a local CPU wheel; the open range in
# pyproject is then satisfied without pulling a CUDA build.
$(STAMP): $(BIN)/python pyproject.toml package.json package-lock.json
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	@# abcjs (scores in the studio, ABC checks in the tests) from npm with its lockfile; optional.
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund --loglevel=error; \
	  else echo "npm not found: the studio will show ABC text without staff notation"; fi
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/folkrnn demo

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build src/*.egg-info
