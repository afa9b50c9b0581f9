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

.PHONY: install sandbox postgres browser accounts cluster demo test lint lab bench clean site

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (course)" >/dev/null
	touch $(STAMP)

install: $(STAMP)

# Debian packages the grader and the tests need, installed when we can (as root, or with sudo):
# $(call debian,PACKAGES,COMMAND THAT SUCCEEDS ONCE THEY ARE THERE,WHAT NEEDS THEM).
define debian
@$(2) >/dev/null 2>&1 || { \
  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
    apt-get update -qq >/dev/null; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null \
      || echo "apt-get install $(1) reported an error (often only a service's start); checking"; \
  elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then \
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1); \
  fi; \
  $(2) >/dev/null 2>&1 || { echo "Install $(1) (apt-get install $(1)) for $(3)."; exit 1; }; }
endef

# The grading sandbox (autograder/sandbox.py): bubblewrap; prlimit and setpriv come with util-linux.
# Without it grading stops with a clear error; `course autograde --no-sandbox` is the explicit opt-out.
sandbox:
	$(call debian,bubblewrap,command -v bwrap,the grading sandbox)

# The tests grade into a real PostgreSQL gradebook (course autograde --db postgresql://...): they
# start a throwaway server from Debian's binaries (tests/pg_server.py).
postgres:
	$(call debian,postgresql,ls /usr/lib/postgresql/*/bin/initdb,the gradebook tests)

# The browser tests (tests/test_browser.py) drive Debian's chromium with the Python playwright package
# (pinned in pyproject's dev extras); no browser is downloaded.
browser:
	$(call debian,chromium,test -x /usr/bin/chromium,the browser tests)

# The tests grade as ordinary users of the machine, who install the course with Debian's Python
# (tests/accounts.py); they submit docs/cluster/grade.sbatch to a real one-node Slurm with munge
# (tests/slurm_cluster.py), and grade under the Kubernetes manifest's seccomp profile, compiled with
# libseccomp's Python binding (tests/test_kubernetes.py).
accounts:
	$(call debian,python3.11-venv,/usr/bin/python3.11 -c "import ensurepip",the tests' ordinary users)
cluster:
	$(call debian,slurm-wlm munge,test -x /usr/sbin/slurmctld -a -x /usr/sbin/munged -a -x /usr/sbin/slurmd,the cluster tests)
	$(call debian,python3-seccomp,/usr/bin/python3 -c "import seccomp",the cluster tests)

demo: $(STAMP) sandbox  ## release hw1, grade three submissions through nbgrader, print the table
	$(BIN)/course demo --out demo_out

test: $(STAMP) sandbox postgres browser accounts cluster  ## ruff, then the whole suite (notebooks, nbgrader, PostgreSQL, Slurm, users, a browser)
	$(BIN)/ruff check .
	COURSE_REQUIRE_SYSTEM=1 OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15

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
