"""A training run through the Python API, for tests/test_parallel.py: one process, or one rank under mpiexec.

    python train_driver.py KIND DATA CFG MODE ITERATIONS [WEIGHTS]     (KIND: detector or classifier)
"""
import sys

from pydarknet.cli import set_threads
from pydarknet.parallel.comm import world
from pydarknet.parallel.replicas import sync_for


def main(kind, data, cfg, mode, iterations, weights=None):
    set_threads(1)
    if kind == "detector":
        from pydarknet.detector.train import train_detector as train
    else:
        from pydarknet.classifier import train_classifier as train
    comm = world()
    train(data, cfg, weights, seed=1, workers=1, chart="", sync=sync_for(mode, comm),
          iterations=int(iterations) or None)
    comm.finalize()


if __name__ == "__main__":
    main(*sys.argv[1:])
