# pydarknet, built like Darknet: `make`, `make GPU=1`, `make test`, `make bench`.
GPU ?= 0
CUDA ?= 12
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

EXTRAS := test
ifeq ($(GPU),1)
EXTRAS := $(EXTRAS),$(if $(filter 13,$(CUDA)),gpu13,gpu)
endif

.PHONY: all install test bench clean smoke

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

# The whole detection path on an image that ships with the project; random weights, no downloads.
smoke:
	mkdir -p out
	$(PYTHON) -m pydarknet randweights cfg/yolov3-tiny.cfg out/yolov3-tiny-random.weights
	$(PYTHON) -m pydarknet detector test cfg/coco.data cfg/yolov3-tiny.cfg out/yolov3-tiny-random.weights \
		data/street.png -thresh .3 -out out/predictions
