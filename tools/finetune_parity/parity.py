"""Issue 23's fine-tune parity check: pjreddie's Darknet and pydarknet trained step by step on identical batches.

    python tools/finetune_parity/parity.py prepare WORK PHOTO.png PHOTO.xml yolov3-tiny.weights [-sizes 416,256]
    tools/finetune_parity/build.sh DARKNET_DIR WORK/harness          # Darknet (OPENMP=1, -Ofast) and the harness
    python tools/finetune_parity/parity.py darknet WORK 416           # WORK/darknet_plain_416.tsv (20 min, 2 cores)
    python tools/finetune_parity/parity.py pydarknet WORK 416         # WORK/pydarknet_plain_416.tsv (4 min)
    python tools/finetune_parity/parity.py compare WORK 416           # the step-by-step table, markdown

    python tools/finetune_parity/parity.py augment WORK 416 -seed 1   # the set aug1: `detector train -seed 1`'s batches
    python tools/finetune_parity/parity.py darknet|pydarknet|compare WORK 416 -set aug1
    python tools/finetune_parity/parity.py pydarknet WORK 416 -perturb          # the control: 1-ulp starting weights
    python tools/finetune_parity/parity.py compare WORK 416 -a pydarknet -b pydarknet-perturbed
    python tools/finetune_parity/parity.py darknet|pydarknet WORK 416 -start W -tag T   # from W, its `seen` kept
    python tools/finetune_parity/parity.py pydarknet WORK 416 -save_state 40    # weights + momentum after step 40
    HARNESS_MOMENTUM=RUN_state40.momentum parity.py darknet WORK 416 -set S -start RUN_state40.weights -tag T
                                                                     # Darknet goes on from pydarknet's step 40
    python tools/finetune_parity/parity.py golden HARNESS           # rewrites tests/data/bnsum from Darknet

The photo is deepforest 2.1.0's `deepforest/data/2019_YELL_2_528000_4978000_image_crop2.png` with its Pascal VOC
XML (the PyPI wheel; MIT), the weights the official yolov3-tiny.weights. `prepare` cuts the photo into 6 x 6
tiles of 416 x 416 (a box is kept, clipped, when half of it is inside), writes the cfg of each size (the
official yolov3-tiny.cfg with classes=1, filters=18, batch=16, subdivisions=1, burn_in=20, random=0), the
conv.15 (pydarknet partial), the starting weights (conv.15 plus the head pydarknet initialises, seed 1: both
sides read this one file, and `detector train -seed 1` starts from the same), each size's input pixels (the tile,
or Darknet's resize_image of it), the truth (Darknet's x, y, w, h, class per box) and the schedule of the set
`plain` (16 tiles per step, drawn with replacement, seed 1). Nothing is random after that, so the two sides see
the same numbers at every step. `augment` writes the batches pydarknet's training loader makes (2 GB for 60
steps at 416), so that both sides train on augmented images too.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree

import cv2
import numpy as np

from pydarknet.backend import to_host
from pydarknet.network import load_network
from pydarknet.image import load_image_color, resize_image
from pydarknet.layers.convolutional import Convolutional
from pydarknet.detector.train import make_loader
from pydarknet.network import partial
from pydarknet.weights import save_weights

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TILE, GRID, STEPS, BATCH, MAX_BOXES = 416, 6, 60, 16, 90


def tiles_and_boxes(photo, xml):
    """The photo's 36 tiles (3, 416, 416) and each tile's boxes as Darknet truth rows (x, y, w, h, class)."""
    im = load_image_color(photo)
    _, height, width = im.shape
    boxes = [[float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
             for o in ElementTree.parse(xml).getroot().iter("object")]
    boxes = np.array(boxes)
    tiles, truths = [], []
    for ty in range(GRID):
        for tx in range(GRID):
            x0 = round(tx * (width - TILE) / (GRID - 1))
            y0 = round(ty * (height - TILE) / (GRID - 1))
            tiles.append(im[:, y0:y0 + TILE, x0:x0 + TILE])
            clipped = np.stack([np.clip(boxes[:, 0] - x0, 0, TILE), np.clip(boxes[:, 1] - y0, 0, TILE),
                                np.clip(boxes[:, 2] - x0, 0, TILE), np.clip(boxes[:, 3] - y0, 0, TILE)], 1)
            inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
            whole = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            kept = clipped[inside >= whole / 2]
            rows = np.zeros((MAX_BOXES, 5), np.float32)
            for k, (a, b, c, d) in enumerate(kept[:MAX_BOXES]):
                rows[k] = ((a + c) / 2 / TILE, (b + d) / 2 / TILE, (c - a) / TILE, (d - b) / TILE, 0)
            truths.append(rows)
    return tiles, np.stack(truths)


def write_cfg(path, size):
    """The official yolov3-tiny.cfg (ours, cfg/yolov3-tiny.cfg) set up for the fine-tune."""
    net_options = {"batch": 16, "subdivisions": 1, "width": size, "height": size, "burn_in": 20, "max_batches": STEPS}
    lines, section = [], None
    with open(os.path.join(REPO, "cfg", "yolov3-tiny.cfg")) as f:
        for line in f:
            if line.startswith("["):
                section = line.strip()
            m = re.match(r"(\w+)\s*=", line)
            key = m.group(1) if m else None
            if section == "[net]" and key in net_options:
                line = f"{key}={net_options[key]}\n"
            elif key == "classes":
                line = "classes=1\n"
            elif key == "filters" and line.split("=")[1].strip() == "255":
                line = "filters=18\n"
            elif key == "random":
                line = "random=0\n"
            lines.append(line)
    with open(path, "w") as f:
        f.writelines(lines)


def prepare(work, photo, xml, weights, sizes):
    os.makedirs(os.path.join(work, "images"), exist_ok=True)
    os.makedirs(os.path.join(work, "labels"), exist_ok=True)
    tiles, truth = tiles_and_boxes(photo, xml)
    print(f"{len(tiles)} tiles, {int((truth[:, :, 2] > 0).sum())} boxes "
          f"(median {np.median(truth[:, :, 2][truth[:, :, 2] > 0]) * TILE:.0f} px wide)")
    # the tiles as files too (for the loader of the augmented sets, and for `detector train` on them)
    paths = []
    for k, (tile, rows) in enumerate(zip(tiles, truth)):
        paths.append(os.path.abspath(os.path.join(work, "images", f"tile_{k:02d}.png")))
        cv2.imwrite(paths[-1], np.rint(tile[::-1].transpose(1, 2, 0) * 255).astype(np.uint8))
        with open(os.path.join(work, "labels", f"tile_{k:02d}.txt"), "w") as f:
            f.writelines(f"0 {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for x, y, w, h, _ in rows if x)
    with open(os.path.join(work, "train.txt"), "w") as f:
        f.writelines(p + "\n" for p in paths)
    with open(os.path.join(work, "trees.data"), "w") as f:
        f.write(f"classes=1\ntrain={os.path.abspath(work)}/train.txt\nvalid={os.path.abspath(work)}/train.txt\n"
                f"names={os.path.abspath(work)}/trees.names\nbackup={os.path.abspath(work)}/backup\n")
    with open(os.path.join(work, "trees.names"), "w") as f:
        f.write("tree\n")
    schedule = np.random.default_rng(1).integers(len(tiles), size=(STEPS, BATCH)).astype("<i4")
    conv15 = os.path.join(work, "yolov3-tiny.conv.15")
    for size in sizes:
        cfg = os.path.join(work, f"yolov3-tiny-{size}.cfg")
        write_cfg(cfg, size)
        if not os.path.exists(conv15):
            partial(cfg, weights, conv15, 15)
        pixels = np.stack([t if size == TILE else resize_image(t, size, size) for t in tiles])
        write_set(work, "plain", size, pixels, truth, schedule)
    # what `detector train DATA CFG yolov3-tiny.conv.15 -seed 1` starts from
    save_weights(load_network(os.path.join(work, f"yolov3-tiny-{sizes[0]}.cfg"), conv15, clear=True, seed=1),
                 os.path.join(work, "start.weights"))
    print(f"wrote {work}")


def augment(work, size, seed):
    """The set `aug<seed>`: the batches pydarknet's training loader makes from the tiles (jitter .3, hue .1,
    saturation and exposure 1.5, flips: the official cfg's augmentation), written out so both sides train on
    them; the schedule is then 0, 1, 2, ... (each batch slot its own image)."""
    net = load_network(os.path.join(work, f"yolov3-tiny-{size}.cfg"))
    loader = make_loader(net, os.path.join(work, "train.txt"), seed, workers=2)
    try:
        batches = [loader.next() for _ in range(STEPS)]
    finally:
        loader.close()
    pixels = np.concatenate([x for x, _ in batches])
    truth = np.concatenate([t for _, t in batches])
    write_set(work, f"aug{seed}", size, pixels, truth, np.arange(len(pixels)).reshape(STEPS, -1))


def write_set(work, name, size, pixels, truth, schedule):
    for array, path in zip((pixels, truth, schedule), _files(work, name, size)[2:]):
        array.astype("<i4" if path.endswith(".i32") else "<f4").tofile(path)


def make_golden(out, harness, steps=3):
    """tests/data/bnsum: Darknet's trajectory for the regression test, from pydarknet's seeded start weights."""
    sys.path.insert(0, REPO)
    from tests.test_finetune_parity import inputs       # the test's inputs are the harness's
    cfg = os.path.join(out, "bnsum.cfg")
    net = load_network(cfg, seed=1)
    save_weights(net, os.path.join(out, "start.weights"))
    pixels, truth = inputs(steps, net.batch, net.w)
    with tempfile.TemporaryDirectory() as tmp:
        files = [os.path.join(tmp, name) for name in ("pixels.f32", "truth.f32", "schedule.i32")]
        pixels.tofile(files[0])
        truth.tofile(files[1])
        np.arange(steps * net.batch, dtype="<i4").tofile(files[2])
        subprocess.run([harness, cfg, os.path.join(out, "start.weights")] + files + [
            str(steps), os.path.join(out, "darknet.tsv"), os.path.join(out, f"after{steps}.weights"), "1",
            os.path.join(tmp, "step1")], check=True, stdout=subprocess.DEVNULL)
        os.replace(os.path.join(tmp, "step1.weights"), os.path.join(out, "after1.weights"))


def _files(work, name, size, start=None):
    """cfg, starting weights, pixels, truth and schedule of the data set `name` at `size`."""
    return [os.path.join(work, f"yolov3-tiny-{size}.cfg"), start or os.path.join(work, "start.weights"),
            os.path.join(work, f"{name}_{size}.pixels.f32"), os.path.join(work, f"{name}_{size}.truth.f32"),
            os.path.join(work, f"{name}_{size}.schedule.i32")]


def run_darknet(work, name, size, steps, dump, start=None, tag=""):
    run = os.path.join(work, f"darknet{tag}_{name}_{size}")
    cmd = [os.path.join(work, "harness")] + _files(work, name, size, start) + [str(steps), run + ".tsv",
                                                                               run + ".weights"]
    if dump:
        cmd += [str(dump), f"{run}_step{dump}"]
    print(" ".join(cmd), flush=True)
    t0 = time.time()
    env = dict(os.environ, **({"HARNESS_KEEP_SEEN": "1"} if start else {}))
    subprocess.run(cmd, check=True, env=env)
    print(f"{time.time() - t0:.0f} s")


def run_pydarknet(work, name, size, steps, dump, perturb=False, start=None, tag="", save_state=0):
    cfg, start_weights, images, truth, schedule = _files(work, name, size, start)
    run = os.path.join(work, f"pydarknet{'-perturbed' if perturb else ''}{tag}_{name}_{size}")
    net = load_network(cfg, start_weights, clear=not start)
    if perturb:
        flip_last_bits(net)
    inputs = 3 * size * size
    pixels = np.fromfile(images, "<f4").reshape(-1, 3, size, size)
    truth = np.fromfile(truth, "<f4").reshape(pixels.shape[0], -1)
    schedule = np.fromfile(schedule, "<i4").reshape(-1, net.batch)[:steps]
    yolos = [layer for layer in net.layers if layer.type == "yolo"]
    convs = [layer for layer in net.layers if isinstance(layer, Convolutional)]
    t0 = time.time()
    with open(run + ".tsv", "w") as out:
        out.write("\t".join(["step", "rate", "loss"] + [f"cost_{y.index}" for y in yolos]
                            + [f"{k}_{c.index}" for c in convs for k in ("w", "bn")]) + "\n")
        for s, slots in enumerate(schedule):
            # train_network_datum, written out so that a dump can sit between backward and update (as the harness)
            net.seen += net.batch
            net.truth = truth[slots]
            net.train = True
            net.forward(pixels[slots])
            net.backward()
            cost = net.cost
            if s + 1 == dump:
                prefix = f"{run}_step{dump}"
                for layer in net.layers:
                    to_host(layer.output).astype("<f4").tofile(f"{prefix}_out_{layer.index:02d}.bin")
                    if layer.delta is not None:
                        to_host(layer.delta).astype("<f4").tofile(f"{prefix}_delta_{layer.index:02d}.bin")
            if (net.seen // net.batch) % net.subdivisions == 0:
                net.update()
            if s + 1 == dump:
                save_weights(net, prefix + ".weights")
            if s + 1 == save_state:     # weights and momentum: where the harness can take over (HARNESS_MOMENTUM)
                save_weights(net, f"{run}_state{save_state}.weights")
                np.concatenate([to_host(a).ravel() for c in convs for a in momentum_arrays(c)]).astype("<f4").tofile(
                    f"{run}_state{save_state}.momentum")
            row = [str(s + 1), f"{net.current_rate():.9g}", f"{cost / net.batch:.9g}"]
            row += [f"{float(y.cost):.9g}" for y in yolos]
            for c in convs:
                bn = np.abs(to_host(c.biases).astype(np.float64)).sum()
                if c.batch_normalize:
                    bn += sum(np.abs(to_host(a).astype(np.float64)).sum()
                              for a in (c.scales, c.rolling_mean, c.rolling_variance))
                row += [f"{np.abs(to_host(c.weights).astype(np.float64)).sum():.12g}", f"{bn:.12g}"]
            out.write("\t".join(row) + "\n")
            out.flush()
            print(f"step {s + 1}: loss {cost / net.batch:f}", file=sys.stderr, flush=True)
    save_weights(net, run + ".weights")
    print(f"{time.time() - t0:.0f} s")


def momentum_arrays(conv):
    """What update_convolutional_layer keeps between steps, in the harness's order."""
    return [conv.weight_updates, conv.bias_updates] + ([conv.scale_updates] if conv.batch_normalize else [])


def flip_last_bits(net):
    """Float32 rounding noise on purpose: the lowest mantissa bit of half the non-zero parameters flipped (seed 1)."""
    rng = np.random.default_rng(1)
    for layer in net.layers:
        for array in layer.weight_arrays():
            bits = array.reshape(-1).view(np.uint32)
            bits ^= rng.integers(0, 2, bits.size, dtype=np.uint32) & (bits << 1 != 0)
    net.weights_changed()


def read_table(path):
    with open(path) as f:
        names = f.readline().split()
        rows = [list(map(float, line.split())) for line in f if line.strip()]
    return names, np.array(rows)


def compare(work, name, size, a="darknet", b="pydarknet"):
    names, dark = read_table(os.path.join(work, f"{a}_{name}_{size}.tsv"))
    names_py, py = read_table(os.path.join(work, f"{b}_{name}_{size}.tsv"))
    assert names == names_py, (names, names_py)
    n = min(len(dark), len(py))
    dark, py = dark[:n], py[:n]
    col = {name: i for i, name in enumerate(names)}
    costs = [name for name in names if name.startswith("cost_")]
    checks = [i for i, name in enumerate(names) if name.startswith(("w_", "bn_"))]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(py - dark) / np.abs(dark)
    print(f"| step | rate | {a} loss | {b} loss | relative difference | "
          + " | ".join(f"{c} rel. diff." for c in costs) + " | weights: max rel. diff. |")
    print("|---" * (6 + len(costs)) + "|")
    for s in range(n):
        print(f"| {int(dark[s, 0])} | {dark[s, col['rate']]:.3g} | {dark[s, col['loss']]:.6g} | "
              f"{py[s, col['loss']]:.6g} | {rel[s, col['loss']]:.1e} | "
              + " | ".join(f"{rel[s, col[c]]:.1e}" for c in costs)
              + f" | {np.nanmax(rel[s, checks]):.1e} ({names[checks[int(np.nanargmax(rel[s, checks]))]]}) |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("work"), p.add_argument("photo"), p.add_argument("xml"), p.add_argument("weights")
    p.add_argument("-sizes", default="416,256")
    p = sub.add_parser("golden", help="Darknet's trajectory on tests/data/bnsum (the regression test's data)")
    p.add_argument("harness"), p.add_argument("-out", default=os.path.join(REPO, "tests", "data", "bnsum"))
    p = sub.add_parser("augment")
    p.add_argument("work"), p.add_argument("size", type=int), p.add_argument("-seed", type=int, default=1)
    for verb in ("darknet", "pydarknet", "compare"):
        p = sub.add_parser(verb)
        p.add_argument("work"), p.add_argument("size", type=int)
        p.add_argument("-set", default="plain", help="plain (the tiles as they are) or aug<seed>")
        if verb != "compare":
            p.add_argument("-steps", type=int, default=STEPS)
            p.add_argument("-dump", type=int, default=0, help="dump every layer's output and delta at this step")
            p.add_argument("-start", help="start from these weights, their `seen` kept (a run resumed in the middle), "
                           "instead of WORK/start.weights with seen 0; the results are named SIDE-TAG_SET_SIZE")
            p.add_argument("-tag", default="", help="with -start: a name for the run")
        if verb == "pydarknet":
            p.add_argument("-save_state", type=int, default=0, help="after this step, write the weights and the "
                           "momentum (RUN_stateK.weights, .momentum) for the harness to go on from")
        if verb == "pydarknet":
            p.add_argument("-perturb", action="store_true", help="the control: every starting weight 1 ulp off "
                           "(half of them, seeded), written as pydarknet-perturbed_SET_SIZE.tsv")
        if verb == "compare":
            p.add_argument("-a", default="darknet"), p.add_argument("-b", default="pydarknet")
    a = parser.parse_args(argv)
    if a.verb == "prepare":
        prepare(a.work, a.photo, a.xml, a.weights, [int(s) for s in a.sizes.split(",")])
    elif a.verb == "golden":
        make_golden(a.out, a.harness)
    elif a.verb == "augment":
        augment(a.work, a.size, a.seed)
    elif a.verb == "darknet":
        run_darknet(a.work, a.set, a.size, a.steps, a.dump, a.start, f"-{a.tag}" if a.tag else "")
    elif a.verb == "pydarknet":
        run_pydarknet(a.work, a.set, a.size, a.steps, a.dump, a.perturb, a.start, f"-{a.tag}" if a.tag else "",
                      a.save_state)
    else:
        compare(a.work, a.set, a.size, a.a, a.b)


if __name__ == "__main__":
    main()
