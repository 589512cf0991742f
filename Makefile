# pydarknet, built like Darknet: `make`, `make GPU=1`, `make test`, `make bench`.
GPU ?= 0
CUDA ?= 12
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

EXTRAS := test
ifeq ($(GPU),1)
EXTRAS := $(EXTRAS),$(if $(filter 13,$(CUDA)),gpu13,gpu)
endif

.PHONY: all install test bench clean

all: install

install:
	$(PIP) install -e ".[$(EXTRAS)]"

test:
	$(PYTHON) -m pytest -q -rs tests

bench:
	$(PYTHON) bench/run.py

clean:
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache .hypothesis build dist *.egg-info
