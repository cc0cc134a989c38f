# imgclone — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
APT_PACKAGES := python3-guestfs libguestfs-tools python3-parted python3-venv lvm2 xfsprogs e2fsprogs \
	dosfstools btrfs-progs gdisk parted qemu-utils qemu-system-x86 ovmf zstd tar acl attr \
	mmdebstrap linux-image-amd64 libcap2-bin guestmount
STAMP := $(VENV)/.setup-done
# the anchor of bench/capture.py (savedir) and bench/partition.py (restfs); no test needs it
BENCH_PACKAGES := fsarchiver

.PHONY: setup test unit lint demo bench clean fixtures
setup: $(STAMP)

# Idempotent and quick when done: apt runs only when a package is missing, pip only when
# pyproject.toml changed.
$(STAMP): pyproject.toml
	@missing=$$(dpkg-query -W -f='$${db:Status-Status} $${Package}\n' $(APT_PACKAGES) 2>/dev/null \
	    | awk '$$1!="installed"{print $$2}'; for p in $(APT_PACKAGES); do \
	    dpkg-query -W $$p >/dev/null 2>&1 || echo $$p; done | sort -u); \
	if [ -n "$$missing" ]; then \
	    echo "setup: installing $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# Every test, unit and integration (docs/testing.md has the budget). JOBS: pytest-xdist workers (`make test JOBS=1`
# runs in one process). worksteal: each worker starts with half the tests, in the order tests/conftest.py gives them
# (the longest first, alternately to each worker), and one that runs out takes half of what the other has left;
# the fixture captures are made once per run, not once per worker.
JOBS  ?= 2
XDIST := $(if $(filter-out 0 1,$(JOBS)),-n $(JOBS) --dist worksteal)

test: setup
	$(PY) -m pytest -v --durations=40 $(XDIST)

unit: setup
	$(PY) -m pytest -m 'not integration' $(XDIST)

lint: setup
	$(PY) -m ruff check imgclone tests bench && $(PY) -m ruff format --check imgclone tests bench && $(PY) -m mypy

demo: setup
	$(PY) -m fixtures.demo

# Bootable Debian 12 qcow2 images (bios, uefi, ext3) in ~/.cache/imgclone/fixtures, built once;
# `make fixtures ONLY=bios` builds one.
STACK_FIXTURES = btrfs btrfs-default thin
fixtures: setup
	$(if $(ONLY),$(PY) -m fixtures.$(if $(filter $(STACK_FIXTURES),$(ONLY)),stacks,build) --only $(ONLY),\
	    $(PY) -m fixtures.build && $(PY) -m fixtures.stacks)

# Every benchmark (root; about 30 min here): one table of ratios, also written to docs/performance.md.
bench: setup
	@missing=$$(for p in $(BENCH_PACKAGES); do dpkg-query -W -f='$${db:Status-Status}\n' $$p 2>/dev/null \
	    | grep -qx installed || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "bench: installing $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	$(PY) bench/all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
