# make book   execute every chapter (quick profile) and build the HTML book in _build/html
# make test   run the test suite
# make bench  run the side-by-side benchmarks
# Each target creates .venv and installs the pinned environment if it is missing.

PY      := .venv/bin/python
PROFILE ?= quick
# Data: $BNLIB_DATA if set, else ../shared/data if it exists (this project's machines), else ./data.
export BNLIB_DATA ?= $(abspath $(if $(wildcard ../shared/data/*.npz),../shared/data,data))
MATHJAX := book/_static/mathjax/tex-chtml.js

.PHONY: book test bench lint clean chromium
book: .venv/.installed $(MATHJAX)
	$(PY) -m bnlib book --profile $(PROFILE)

test: .venv/.installed $(MATHJAX) chromium
	$(PY) -m pytest tests

# The browser check in the tests loads every page of the smoke book in headless Chromium
# (Debian's package); install it where missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

# Each benchmark prints the machine's measured fp32 peak and ends with one line `ratio X.XXx`.
bench: .venv/.installed .venv/.bench-installed
	@start=$$(date +%s); for f in benchmarks/bench_*.py; do echo "== $$f"; t=$$(date +%s); \
	  $(PY) $$f || exit 1; echo "== $$f: $$(( $$(date +%s) - t )) s"; done; \
	  echo "== make bench: $$(( $$(date +%s) - start )) s in all"

lint: .venv/.installed
	.venv/bin/ruff check bnlib tests benchmarks

.venv/.installed: requirements-lock.txt pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-lock.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

.venv/.bench-installed: requirements-bench.txt .venv/.installed
	$(PY) -m pip install --quiet --no-deps -r requirements-bench.txt
	touch $@

# MathJax 3 from the npm registry, so the book renders math offline (no CDN).
$(MATHJAX):
	rm -rf .mathjax-tmp && mkdir -p .mathjax-tmp book/_static/mathjax
	cd .mathjax-tmp && npm pack --silent mathjax@3.2.2 >/dev/null && tar xzf mathjax-3.2.2.tgz
	cp -r .mathjax-tmp/package/es5/tex-chtml.js .mathjax-tmp/package/es5/input \
	      .mathjax-tmp/package/es5/output .mathjax-tmp/package/es5/ui \
	      .mathjax-tmp/package/es5/a11y .mathjax-tmp/package/es5/adaptors book/_static/mathjax/
	rm -rf .mathjax-tmp

clean:
	rm -rf _build book/chapters book/summary book/_static/mathjax
