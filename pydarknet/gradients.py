"""Gradient health (`-grad_stats N`): every N iterations, per layer, the RMS of the layer's delta after the
backward pass and the update ratio |w_after - w_before| / |w_before| of its weights; a warning for a layer whose
delta stays below `floor` times the largest layer's for 3 reports in a row (vanishing gradients); and a layer x
iteration heatmap of the delta RMS, gradients.png beside the chart."""
import math
import os
import warnings

import numpy as np

from . import files
from .backend import to_host

VANISHED_REPORTS = 3


class GradientWarning(UserWarning):
    """A layer's gradient has vanished."""


class GradientHealth:
    def __init__(self, every, floor=1e-8, picture=None, out=None):
        self.every, self.floor, self.picture, self.out = every, floor, picture, out
        self.iterations, self.rms = [], []         # per report: the iteration, each layer's delta RMS
        self.low = {}                              # layer index -> reports in a row below the floor
        self.named = set()
        self.before = None

    def due(self, count):
        return count % self.every == 0

    def before_step(self, net):
        """The weights before this step's update (on a report's iteration only)."""
        self.before = [None if getattr(layer, "weights", None) is None else to_host(layer.weights).copy()
                       for layer in net.layers]

    def after_step(self, net, i):
        """The report of iteration i: printed, kept for the heatmap; returns {"delta_rms": [...], "update_ratio":
        [...]} for metrics.jsonl (None where a layer has no delta or no weights)."""
        rms = [None if layer.delta is None else float(np.sqrt(np.mean(np.square(to_host(layer.delta),
                                                                              dtype=np.float64))))
               for layer in net.layers]
        ratios = []
        for layer, old in zip(net.layers, self.before):
            if old is None:
                ratios.append(None)
                continue
            norm = float(np.linalg.norm(old.astype(np.float64)))
            change = float(np.linalg.norm(to_host(layer.weights).astype(np.float64) - old))
            ratios.append(change / norm if norm else math.inf)
        self.before = None
        self.print_report(net, i, rms, ratios)
        self.watch(net, rms)
        self.iterations.append(i)
        self.rms.append(rms)
        return {"delta_rms": rms, "update_ratio": ratios}

    def print_report(self, net, i, rms, ratios):
        print(f"gradients at iteration {i}: layer, delta RMS, update ratio", file=self.out)
        for layer, value, ratio in zip(net.layers, rms, ratios):
            print(f"{layer.index:5d} {layer.type:<15} {'-' if value is None else f'{value:.3e}':>10} "
                  f"{'-' if ratio is None else f'{ratio:.3e}':>10}", file=self.out)

    def watch(self, net, rms):
        """A layer below floor x the largest delta RMS for VANISHED_REPORTS reports in a row: one warning."""
        largest = max((v for v in rms if v is not None), default=0.0)
        for layer, value in zip(net.layers, rms):
            low = value is not None and value < self.floor * largest
            self.low[layer.index] = self.low.get(layer.index, 0) + 1 if low else 0
            if self.low[layer.index] >= VANISHED_REPORTS and layer.index not in self.named:
                self.named.add(layer.index)
                warnings.warn(GradientWarning(
                    f"layer {layer.index} ({layer.type}): its gradient has vanished (delta RMS {value:.2e}, below "
                    f"{self.floor:g} x the largest layer's {largest:.2e}, {VANISHED_REPORTS} reports in a row): the "
                    f"layers before it barely learn (saturating activations? try leaky, batch-norm or shortcuts)"))

    def draw(self):
        """gradients.png: log10 of each layer's delta RMS by report."""
        if not self.picture or not self.iterations:
            return
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return
        grid = np.array([[np.nan if v is None or v <= 0 else math.log10(v) for v in row] for row in self.rms]).T
        fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
        image = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest",
                          extent=(-.5, len(self.iterations) - .5, grid.shape[0] - .5, -.5))
        ax.set_xticks(range(len(self.iterations)), [str(i) for i in self.iterations],
                      rotation=90 if len(self.iterations) > 12 else 0)
        ax.set_xlabel("iteration")
        ax.set_ylabel("layer")
        ax.set_title("log10 of each layer's delta RMS")
        fig.colorbar(image, ax=ax)
        fig.tight_layout()
        with files.replacing(self.picture) as tmp:
            fig.savefig(tmp, format=os.path.splitext(self.picture)[1][1:] or "png")
        plt.close(fig)
