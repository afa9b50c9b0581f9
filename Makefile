# Everything goes through this Makefile. `make demo` and `make test` work on a fresh machine
# with only Python 3.11, pip and gcc: the first target that needs it creates .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
# Jupyter looks for kernels and config inside the venv first.
export JUPYTER_PLATFORM_DIRS := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1
export MPLBACKEND := Agg

.PHONY: install sandbox postgres browser demo test lint lab bench clean site

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (course)" >/dev/null
	touch $(STAMP)

install: $(STAMP)

# The grading sandbox (autograder/sandbox.py) needs bubblewrap; prlimit and setpriv come with
# util-linux. Debian's package is installed when we can; otherwise grading stops with a clear
# error and `course autograde --no-sandbox` is the explicit opt-out.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq >/dev/null && apt-get install -y -qq bubblewrap >/dev/null; \
	  elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then \
	    sudo apt-get install -y -qq bubblewrap; \
	  else \
	    echo "Install bubblewrap (apt-get install bubblewrap) for the grading sandbox."; exit 1; \
	  fi; }

# The tests grade into a real PostgreSQL gradebook (course autograde --db postgresql://...): they
# start a throwaway server from Debian's binaries (tests/pg_server.py). Installed when we can.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq >/dev/null; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
	      || echo "apt-get install postgresql reported an error (often only the service start); checking initdb"; \
	    ls /usr/lib/postgresql/*/bin/initdb >/dev/null || exit 1; \
	  elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then \
	    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	  else \
	    echo "Install PostgreSQL's server (apt-get install postgresql) for the gradebook tests."; exit 1; \
	  fi; }

# The browser tests (tests/test_browser.py) drive Debian's chromium with the Python playwright package
# (pinned in pyproject's dev extras); no browser is downloaded. Installed when we can.
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then \
	    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "Install Debian's chromium (apt-get install chromium) for the browser tests."; exit 1; \
	  fi; }

demo: $(STAMP) sandbox  ## release hw1, grade three submissions through nbgrader, print the table
	$(BIN)/course demo --out demo_out

test: $(STAMP) sandbox postgres browser  ## ruff, then the whole pytest suite (notebooks, nbgrader, PostgreSQL, a browser)
	$(BIN)/ruff check .
	COURSE_REQUIRE_POSTGRES=1 OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15

# The course site: the lessons run in the kit's layout (the full budget; COURSE_QUICK=1 for the quick
# one), the homework statements, the API and the guides, into build/site/html (docs/site/build.py).
site: $(STAMP)  ## the course site into build/site/html/index.html
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) docs/site/build.py --out build/site

lint: $(STAMP)
	$(BIN)/ruff check .

lab: $(STAMP)  ## JupyterLab on the course
	$(BIN)/jupyter lab --notebook-dir=.

bench: $(STAMP)  ## speed and quality measurements into benchmarks/results/*.json, then docs/performance.md
	@mkdir -p benchmarks/results
	@for f in benchmarks/bench_*.py; do \
	  name=$$(basename $$f .py); name=$${name#bench_}; \
	  $(PY) $$f > benchmarks/results/$$name.json.tmp && mv benchmarks/results/$$name.json.tmp benchmarks/results/$$name.json \
	    || { rm -f benchmarks/results/$$name.json.tmp; echo "$$f failed; its previous result is kept"; exit 1; }; \
	done
	$(PY) benchmarks/report.py

clean:
	rm -rf $(VENV) demo_out bench_out build dist *.egg-info
