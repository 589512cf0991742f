# pydarknet, built like Darknet: `make`, `make GPU=1`, `make test`, `make bench`.
GPU ?= 0
CUDA ?= 12
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

EXTRAS := test
ifeq ($(GPU),1)
EXTRAS := $(EXTRAS),$(if $(filter 13,$(CUDA)),gpu13,gpu)
endif

.PHONY: all install test bench bench-learn clean demo

all: install

install:
	$(PIP) install -e ".[$(EXTRAS)]"

test:
	$(PYTHON) -m pytest -q -rs tests

bench:
	$(PYTHON) bench/run.py

# Do the small v1/v2/v3 networks learn the shapes dataset, and how fast (about an hour on 2 cores)
bench-learn:
	$(PYTHON) bench/bench_learn.py

clean:
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache .hypothesis build dist *.egg-info

# The main job on the embedded dataset: generate coloured shapes, train a narrow YOLOv3-tiny from scratch on the CPU
# (with mAP on the validation images every 100 iterations and out/chart.png), measure mAP, draw predictions.
DEMO := out/shapes
demo:
	$(PYTHON) -m pydarknet dataset shapes $(DEMO) -n 2000 -size 160 -seed 1
	cd out && $(PYTHON) -m pydarknet detector train shapes/shapes.data ../cfg/yolov3-tiny-shapes.cfg -seed 1 -map
	$(PYTHON) -m pydarknet detector map $(DEMO)/shapes.data cfg/yolov3-tiny-shapes.cfg \
		$(DEMO)/backup/yolov3-tiny-shapes_final.weights
	$(PYTHON) -m pydarknet detector test $(DEMO)/shapes.data cfg/yolov3-tiny-shapes.cfg \
		$(DEMO)/backup/yolov3-tiny-shapes_final.weights data/shapes-sample.png -thresh .25 -out out/predictions
