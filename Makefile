# Every target creates or updates .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NONSTOP_TEST_POSTGRES ?= postgresql://postgres@127.0.0.1:5432/test
export NONSTOP_TEST_POSTGRES

.PHONY: demo test bench lint docs venv postgres browser clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[postgres,kafka,testing,metrics,console,test,dev,bench,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nonstop demo $(if $(STORE),--store $(STORE),)

postgres:
	@bash .ci/ensure-postgres

# The console's browser test renders pages in Debian's chromium: installed with
# apt when missing (the test skips without it, except under CI).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  chromium; } || echo "chromium is not installed: the console's browser test \
	will be skipped" >&2

test: $(STAMP) postgres browser
	$(BIN)/python -m pytest -q tests

bench: $(STAMP) postgres
	$(BIN)/python -m bench $(if $(QUICK),--quick,)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The documentation site with the API reference, in site/; any warning fails it.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) nonstop.db* nonstop-demo.db* .pytest_cache .mypy_cache .ruff_cache \
		.hypothesis build *.egg-info site
