"""Training runs for tests/test_parallel_train.py, each in a process of its own (one thread, like every rank):

    python train_driver.py train KIND DATA CFG MODE ITERATIONS   one process, or one rank under mpiexec (KIND:
                                                                  detector or classifier; ITERATIONS 0: no cap)
    python train_driver.py transcript DATA CFG OUT               pjreddie's -gpus 0,1 in one process: two replicas
                                                                  on their slices, averaged every 4 batches
    python train_driver.py demo OUT                               make demo's run(), shortened (40 images, 3
                                                                  iterations), as one process or one rank
"""
import importlib.util
import sys

import numpy as np

from pydarknet.cfg import read_data
from pydarknet.cli import set_threads
from pydarknet.data.labels import read_list
from pydarknet.detector.train import make_loader
from pydarknet.network import load_network
from pydarknet.parallel.comm import world
from pydarknet.parallel.replicas import sync_for
from pydarknet.trainer import train_network
from pydarknet.weights import save_weights

REPO = __file__.rsplit("/tests/", 1)[0]


def train(kind, data, cfg, mode, iterations):
    if kind == "detector":
        from pydarknet.detector.train import train_detector as run
    else:
        from pydarknet.classifier import train_classifier as run
    comm = world()
    run(data, cfg, None, seed=1, workers=1, chart="", sync=sync_for(mode, comm), iterations=int(iterations) or None)
    comm.finalize()


def transcript(data, cfg, out, ngpus=2, interval=4):
    """train_detector with ngpus: every replica built from the same seed, learning_rate *= ngpus, the loader's
    batch * subdivisions * ngpus images split into contiguous parts (get_data_part), each replica's own SGD step
    (momentum and rolling statistics its own), and sync_nets every `interval` batches of the counter: seen +=
    interval*(n-1)*batch*subdivisions, the weights, biases and scales averaged."""
    nets = [load_network(cfg, seed=1) for _ in range(ngpus)]
    for net in nets:
        net.learning_rate *= ngpus
    first = nets[0]
    imgs = first.batch * first.subdivisions
    loader = make_loader(first, read_list(read_data(data).path_of("train", "")), 1, 1, 0, imgs * ngpus)

    def sync(interval):
        seen = first.seen + interval * (ngpus - 1) * imgs
        for parts in zip(*(net.layers for net in nets)):
            for name in ("weights", "biases", "scales"):
                if getattr(parts[0], name, None) is not None:
                    mean = sum(getattr(layer, name) for layer in parts[1:]) + getattr(parts[0], name)
                    mean /= np.float32(ngpus)
                    for layer in parts:
                        getattr(layer, name)[...] = mean
        for net in nets:
            net.seen = seen
            net.weights_changed()

    while first.current_batch() < first.max_batches:
        x, truth = loader.next()
        for i, net in enumerate(nets):
            train_network(net, x[i * imgs:(i + 1) * imgs], truth[i * imgs:(i + 1) * imgs])
        if first.current_batch() % interval == 0:
            sync(interval)
    loader.close()
    sync(0)             # before the final save
    save_weights(first, out)


def demo(out):
    spec = importlib.util.spec_from_file_location("shapes_demo", f"{REPO}/examples/shapes_demo.py")
    shapes_demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shapes_demo)
    result = shapes_demo.run(out, images=40, max_batches=3)
    if world().rank == 0:
        print(f"\nmAP {result['map']}")
    world().finalize()


if __name__ == "__main__":
    set_threads(1)
    {"train": train, "transcript": transcript, "demo": demo}[sys.argv[1]](*sys.argv[2:])
