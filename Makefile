# The two commands of the README: `make sim` and `make test`. Both set up .venv on first use.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.setup-done
STATE ?= .sim-state
SCENARIO ?= tools/scenarios/default.json
PYTEST_ARGS ?=

.PHONY: setup system sim test check bench faults soak deploy image clean

# Debian packages the tests and the simulator start for real (apt-get as root; else one line saying how).
system:
	@bash tools/setup_system.sh

$(SETUP_STAMP): requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

# The ESP32-like runtime (32-bit, float32, firmware frozen): built once, re-frozen when the firmware changes.
setup: system $(SETUP_STAMP)
	@$(PY) tools/esp32like/build.py >/dev/null

sim: setup
	$(PY) tools/run_sim.py --state $(STATE) --scenario $(SCENARIO)

check: setup
	$(PY) tools/check_firmware.py

test: check
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

# Not part of make test: the engine against a plain float implementation, heap per sample and window;
# then the uplink's latencies on loopback (needs mosquitto); then a release signature check (P-256) with the
# chip's heap size, CPython for reference; then metering while updates download and install (both runtimes,
# about 3 minutes: docs/reliability.md, "Metering during an update").
bench: setup
	$(VENV)/bin/micropython tools/bench/bench_engine.py
	build/esp32like/micropython tools/bench/bench_engine.py
	$(PY) tools/bench/bench_uplink.py
	$(VENV)/bin/micropython -X heapsize=112k tools/bench/bench_verify.py
	build/esp32like/micropython -X heapsize=112k tools/bench/bench_verify.py
	$(PY) tools/bench/bench_verify.py
	$(PY) tools/bench/bench_update.py

# Not part of make test: the fault-injection campaign (under 20 minutes) and the long soak (MINUTES=60).
faults: setup
	$(PY) tools/faults.py $(FAULTS_ARGS)

MINUTES ?= 60
soak: setup
	$(PY) tools/soak.py --minutes $(MINUTES) $(SOAK_ARGS)

# make deploy PORT=/dev/ttyUSB0 BOARD=olimex_esp32_poe
deploy: setup
	@test -n "$(BOARD)" -a -n "$(PORT)" || { echo "usage: make deploy BOARD=olimex_esp32_poe PORT=/dev/ttyUSB0"; exit 2; }
	$(PY) tools/deploy.py --board $(BOARD) --port $(PORT)

# make image BOARD=olimex_esp32_poe: an ESP32 firmware image with the firmware frozen in (needs ESP-IDF and
# a MicroPython checkout: see tools/image.py; without them it writes the manifest and says what is missing).
image: setup
	@test -n "$(BOARD)" || { echo "usage: make image BOARD=olimex_esp32_poe"; exit 2; }
	$(PY) tools/image.py --board $(BOARD)

clean:
	rm -rf build .pytest_cache .hypothesis .ruff_cache test-output
