"""An embedded classification dataset in Darknet's classifier layout: one shape an image, its class in the name.

    pydarknet dataset shapes-cls OUTDIR [-n 1000] [-size 64] [-seed 0]

writes
    OUTDIR/images/00000_circle.png ...   one shape (30%-80% of the side) on a textured background, as `dataset
                                         shapes` draws them; classes in turn, so they come out balanced
    OUTDIR/train.list, valid.list        absolute image paths, one a line (valid: a fifth, at random)
    OUTDIR/labels.txt                    circle square triangle cross ring
    OUTDIR/shapes-cls.data               classes, train, valid, test (= valid), labels, names, top=2, backup

Darknet's classifier finds an image's class as the label its path contains (strstr), so an OUTDIR whose own path
contains a class name ("/data/circles") would give every image that class too: it is refused.
"""
import concurrent.futures
import os

import numpy as np

from .. import files
from .shapes import SHAPES, render, write_png

SIDES = (0.30, 0.80)


def sample(seed, index, size=64, classes=SHAPES):
    """Image `index`: (BGR uint8 image, class index); one shape of class index % len(classes), drawn again (from
    the same generator) in the rare case that no placement fitted."""
    rng = np.random.default_rng([seed, 2, index])
    cls = index % len(classes)
    for _ in range(20):
        image, shapes = render(rng, size, (classes[cls],), objects=1, sides=SIDES, crossing=0)
        if shapes:
            return image, cls
    raise RuntimeError(f"shapes-cls: no {classes[cls]} fitted into image {index} of {size}x{size}")


def check_outdir(outdir, classes):
    """Refuse a folder whose path names a class: Darknet would read that class out of every image's path."""
    named = [c for c in classes if c in outdir]
    if named:
        raise ValueError(f"{outdir}: the path contains '{named[0]}', so Darknet's classifier would find that class "
                         f"in every image's path; choose a folder whose path names no class")


def generate(outdir, n=1000, size=64, seed=0, valid_fraction=0.2, classes=SHAPES, workers=None):
    """Write the dataset (see the module); returns the path of its .data file."""
    if int(n) != n or n < 2:
        raise ValueError(f"n={n}: need at least two images")
    if int(size) != size or not 16 <= size <= 1024:
        raise ValueError(f"size={size}: need an integer from 16 to 1024")
    n, size = int(n), int(size)
    outdir = os.path.abspath(os.fsdecode(outdir))
    check_outdir(outdir, classes)
    images = os.path.join(outdir, "images")
    os.makedirs(images, exist_ok=True)
    width = max(5, len(str(n - 1)))

    def write(i):
        image, cls = sample(seed, i, size, classes)
        return write_png(os.path.join(images, f"{i:0{width}d}_{classes[cls]}.png"), image)

    with concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        paths = list(pool.map(write, range(n)))
    is_valid = np.zeros(n, bool)
    is_valid[np.random.default_rng([seed, 3]).permutation(n)[:min(max(int(round(n * valid_fraction)), 1), n - 1)]] = 1
    lists = {name: os.path.join(outdir, name) for name in ("train.list", "valid.list", "labels.txt")}
    files.write_lines(lists["train.list"], [p for p, v in zip(paths, is_valid) if not v])
    files.write_lines(lists["valid.list"], [p for p, v in zip(paths, is_valid) if v])
    files.write_lines(lists["labels.txt"], classes)
    data = os.path.join(outdir, "shapes-cls.data")
    files.write_lines(data, [f"classes={len(classes)}", f"train={lists['train.list']}",
                             f"valid={lists['valid.list']}", f"test={lists['valid.list']}",
                             f"labels={lists['labels.txt']}", f"names={lists['labels.txt']}", "top=2",
                             f"backup={os.path.join(outdir, 'backup')}"])
    return data
