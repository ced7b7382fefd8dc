# Every target creates or updates .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NONSTOP_TEST_POSTGRES ?= postgresql://postgres@127.0.0.1:5432/test
export NONSTOP_TEST_POSTGRES

.PHONY: demo test bench lint docs venv postgres debs clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[postgres,kafka,testing,metrics,console,test,dev,bench,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nonstop demo $(if $(STORE),--store '$(STORE)',)

postgres:
	@bash .ci/ensure-postgres

# Debian packages that tests run: prometheus (the rollout guard's PromQL
# checks), chromium and chromium-driver (the console's pages in a browser,
# driven by Selenium through chromedriver). Installed with apt when missing; a
# test that needs one skips without it, except under CI.
DEBS := prometheus chromium chromium-driver
debs:
	@missing=$$(for p in $(DEBS); do c=$$p; [ $$p = chromium-driver ] && c=chromedriver; \
	  command -v $$c >/dev/null 2>&1 || echo $$p; done); \
	[ -z "$$missing" ] || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  $$missing >/dev/null; } || echo "not installed: $$missing; the tests that \
	need them will be skipped" >&2

test: $(STAMP) postgres debs
	$(BIN)/python -m pytest -q -n 2 tests

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
