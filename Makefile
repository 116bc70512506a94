# Everyday commands.  `make test` and `make demo` work on a fresh Debian 12
# machine with Python 3.11 (run as root, or with sudo available): they install
# the Debian packages the build and the tests need, create .venv, build the
# compiled modules and install the package there.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEB_PACKAGES := libpcap-dev tcpdump tshark python3-venv python3-dev gcc iproute2 \
                globus-gridftp-server-progs globus-gass-copy-progs prometheus redis-server \
                curl openssl openssh-server openssh-client dnsmasq-base bind9-dnsutils \
                swaks python3-aiosmtpd ngtcp2-client ngtcp2-server tcpreplay ethtool
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps venv install build test demo bench fuzz soak lint clean

all: install

# Debian packages: only what is missing, so a second run costs nothing.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel Cython

venv: deps $(PY)

# The package (editable) and its Python dependencies: installed again only
# when setup.py or pyproject.toml change; `build` brings the compiled modules
# up to date with the sources.  The compat mode puts the checkout on
# sys.path with a plain .pth line: the default mode's import finder costs
# every start-up about 15 ms (it imports pathlib and importlib.util).  It is
# transitional in setuptools, hence the fallback.
$(VENV)/.installed: setup.py pyproject.toml setup.cfg | $(PY)
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat 2>/dev/null || \
	  $(PY) -m pip install -q -e '.[test]'
	touch $@

install: venv $(VENV)/.installed build

# Rebuild the compiled modules in place after editing a .pyx/.pxd, or a
# protocol or runtime module (analyser/compiled.py: those are compiled too;
# an edited one runs as source, slower, until this is run).  Bytecode is
# written too: startup reads it rather than compiling the sources each run.
build: venv
	$(PY) setup.py -q build_ext --inplace
	$(PY) -m compileall -q analyser ringbuf protocols >/dev/null

test: install
	$(PY) -m pytest -q tests

# The sample FTP session (pyftpdlib on port 2121, found by its content): which control connection
# started which data connections, and how big each transfer was.
demo: install
	$(VENV)/bin/analyser replay traces/ftp-loopback.pcap \
	    --logs demo-logs --events demo-logs/events.json
	@for log in conn ftp transfers; do echo; echo "== demo-logs/$$log.log"; \
	    grep -v '^#' demo-logs/$$log.log | { column -t -s "$$(printf '\t')" 2>/dev/null || cat; } \
	    | cut -c1-200; done

bench: install
	$(PY) bench/run_bench.py
	$(PY) bench/bench_small_packets.py
	$(PY) bench/bench_analysers.py
	$(PY) bench/bench_live.py
	$(PY) bench/bench_ftp.py
	$(PY) bench/bench_peers.py
	$(PY) bench/bench_hostile.py
	$(PY) bench/bench_runtime_floor.py

# Coverage-guided fuzzing (atheris): every target SECONDS each; corpus, crashes
# and logs under $FUZZ_WORKDIR (default /tmp/analyser-fuzz; fuzz/README.md).
# `make fuzz SECONDS=300`
SECONDS ?= 60
fuzz: install
	$(PY) -m pip install -q -e '.[fuzz]'
	$(PY) fuzz/run.py --seconds $(SECONDS)

# A long live run with real FTP, HTTP and TLS traffic between network
# namespaces (root): drops, transfers, memory curve.  `make soak MINUTES=30`
MINUTES ?= 30
soak: install
	$(PY) fuzz/soak.py --minutes $(MINUTES)

lint: venv
	$(PY) -m pip install -q ruff
	$(VENV)/bin/ruff check analyser ringbuf protocols tests bench traces fuzz

clean:
	rm -rf build demo-logs *.egg-info
	find . -name '*.so' -o -name '*.c' -path './ringbuf/*' -o -name '*.c' -path './analyser/*' | xargs rm -f
