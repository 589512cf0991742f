"""Profile: where pydarknet's time goes, by layer type and pass, for a yolov3-tiny 416 batch-8 training step and a
batch-1 inference. Each layer's forward, backward, update (and zero_delta) is wrapped with a timer; the medians over
the steps after a warm-up are summed by kind. Convolutions are split by kind: 3x3 Winograd (the layer holds
Winograd-transformed weights after its forward pass), 3x3 direct (few input channels), 3x3 im2col, 1x1, strided.

    python -m bench.bench_profile            # prints the table
    from bench.bench_profile import run      # run(log=None, steps=3) -> rows for bench/run.py
"""
import contextlib
import io
import os
import statistics
import sys
import time

from bench.bench_train import inputs, network, threads, PAUSE_S, THREADS
from pydarknet.backend.cpu import direct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

PASSES = ("inference forward", "training forward", "backward", "update")


def kind(layer):
    """The layer's type, convolutions split by how their forward pass ran."""
    if layer.type != "convolutional":
        return layer.type if layer.type not in (None, "", "none") else type(layer).__name__.lower()
    size, stride = layer.size, layer.stride
    if stride > 1:
        return f"convolutional {size}x{size} strided"
    if size == 1:
        return "convolutional 1x1"
    if "winograd" in (getattr(layer, "derived", None) or {}):
        return f"convolutional {size}x{size} Winograd"
    if direct.applies(layer.in_shape[0], size, stride, layer.pad, layer.groups):
        return f"convolutional {size}x{size} direct"
    return f"convolutional {size}x{size} im2col"


def instrument(net, timings):
    """Wrap each layer's methods; timings[(layer index, method)] collects ms, kinds[index] the layer's kind."""
    kinds = {}

    def timed(i, layer, name, method):
        def wrapper(*args):
            start = time.perf_counter()
            result = method(*args)
            timings.setdefault((i, name), []).append((time.perf_counter() - start) * 1e3)
            if name == "forward":
                kinds[i] = kind(layer)
            return result
        return wrapper

    for i, layer in enumerate(net.layers):
        for name in ("forward", "backward", "update", "zero_delta"):
            if hasattr(layer, name):
                setattr(layer, name, timed(i, layer, name, getattr(layer, name)))
        if hasattr(layer, "forward_pooled"):    # predict's convolution + maxpool pass, as the convolution's forward
            layer.forward_pooled = timed(i, layer, "forward", layer.forward_pooled)
    return kinds


def by_kind(timings, kinds, method, steps):
    """{kind: (ms per step, layer count)}: per layer the median over the steps, summed by kind."""
    out = {}
    for (i, name), values in timings.items():
        if name != method:
            continue
        per_step = [sum(values[j::steps]) for j in range(steps)] if len(values) % steps == 0 else values
        ms, count = out.get(kinds.get(i, "?"), (0.0, 0))
        out[kinds.get(i, "?")] = (ms + statistics.median(per_step), count + 1)
    return out


def profile(batch, train, steps, log):
    net = network(batch)
    x, truth = inputs(batch)
    timings = {}
    kinds = instrument(net, timings)
    totals = []
    with threads(THREADS), contextlib.redirect_stdout(io.StringIO()):
        step = (lambda: net.train_datum(x, truth)) if train else (lambda: net.predict(x))
        step()
        timings.clear()
        for _ in range(steps):
            time.sleep(PAUSE_S)
            start = time.perf_counter()
            step()
            totals.append((time.perf_counter() - start) * 1e3)
    log and log(f"  profile batch {batch} {'training' if train else 'inference'}: {statistics.median(totals):,.0f} ms")
    methods = (("training forward" if train else "inference forward", "forward"),)
    if train:
        methods += (("backward", "backward"), ("zero delta", "zero_delta"), ("update", "update"))
    rows = []
    for label, method in methods:
        found = by_kind(timings, kinds, method, steps)
        if method == "zero_delta":        # clearing the deltas before backward: one row for all layers
            found = {"all layers": (sum(ms for ms, _ in found.values()), sum(n for _, n in found.values()))}
        for k, (ms, count) in sorted(found.items(), key=lambda kv: -kv[1][0]):
            if method != "update" or ms >= 0.05:      # layers without parameters update nothing
                rows.append({"pass": label, "kind": k, "layers": count, "ms": ms})
    rows.append({"pass": "whole step" if train else "whole pass", "kind": "all (the layers' sum, then the rest)",
                 "layers": len(net.layers), "ms": statistics.median(totals),
                 "layers_ms": sum(r["ms"] for r in rows)})
    return rows


def run(log=None, steps=3, batch=8):
    """Rows {work, pass, kind, layers, ms}: batch-1 inference, then the batch-`batch` training step."""
    rows = []
    for b, train in ((1, False), (batch, True)):
        work = f"yolov3-tiny 416 {'training step, batch ' + str(b) if train else 'inference, batch 1'}"
        rows += [dict(r, work=work) for r in profile(b, train, steps, log)]
    return rows


def table(rows):
    """Markdown lines for run()'s rows."""
    out = ["| work | pass | layer kind | layers | ms | share of the whole |", "|---|---|---|---:|---:|---:|"]
    whole = {r["work"]: r["ms"] for r in rows if "layers_ms" in r}
    for r in rows:
        if "layers_ms" in r:
            out.append(f"| {r['work']} | {r['pass']} | layers {r['layers_ms']:,.1f} ms, outside them "
                       f"{r['ms'] - r['layers_ms']:,.1f} ms | {r['layers']} | {r['ms']:,.1f} | 100% |")
        else:
            out.append(f"| {r['work']} | {r['pass']} | {r['kind']} | {r['layers']} | {r['ms']:,.1f} "
                       f"| {100 * r['ms'] / whole[r['work']]:.0f}% |")
    return out


if __name__ == "__main__":
    print("\n".join(table(run(log=print, steps=int(sys.argv[1]) if len(sys.argv) > 1 else 3))))
