"""The [net] section: Darknet's parse_net_options, and the learning-rate policy it names (get_current_rate)."""
import numpy as np

from .layers.base import MemoryBudget

POLICIES = ("constant", "step", "steps", "exp", "poly", "sigmoid", "random")


class NetOptions:
    """What [net] says: the input size, the batch, the SGD settings, augmentation and the learning-rate policy.

    Network is one (it adds `seen`, the images trained on so far, and `rng`, which the random policy draws from);
    the attributes keep Darknet's [net] option names."""

    def read_net_options(self, s):
        """Darknet's parse_net_options: batch is divided by subdivisions, the learning-rate policy read by name."""
        self.net_section = s
        self._read_input(s)
        self.max_crop = s.int("max_crop", self.w * 2)
        self.min_crop = s.int("min_crop", self.w)
        # the classifier's crop sizes, as fractions of the width ((float) min_crop / w in C)
        self.min_ratio = s.float("min_ratio", float(np.float32(self.min_crop) / np.float32(self.w or 1)))
        self.max_ratio = s.float("max_ratio", float(np.float32(self.max_crop) / np.float32(self.w or 1)))
        self.center = s.int("center", 0)
        self.angle = s.float("angle", 0.0)
        self.aspect = s.float("aspect", 1.0)
        self.saturation = s.float("saturation", 1.0)
        self.exposure = s.float("exposure", 1.0)
        self.hue = s.float("hue", 0.0)
        self.random = s.int("random", 0)
        self.adam = s.int("adam", 0)
        self._read_policy(s)

    def _read_input(self, s):
        """batch, subdivisions, time_steps, the SGD settings and the input size; an input too large for memory is
        refused here."""
        self.subdivisions = s.int("subdivisions", 1)
        if self.subdivisions <= 0:
            raise s.error(f"must be positive, not {self.subdivisions}", "subdivisions")
        self.time_steps = s.int("time_steps", 1)
        if self.time_steps <= 0:
            raise s.error(f"must be positive, not {self.time_steps}", "time_steps")
        self.batch = max(s.int("batch", 1) // self.subdivisions, 1) * self.time_steps
        self.learning_rate = s.float("learning_rate", .001)
        self.momentum = s.float("momentum", .9)
        self.decay = s.float("decay", .0001)
        self.h, self.w, self.c = s.int("height", 0), s.int("width", 0), s.int("channels", 0)
        for key, value in (("height", self.h), ("width", self.w), ("channels", self.c)):
            if value < 0:
                raise s.error(f"must not be negative, not {value}", key)
        self.inputs = s.int("inputs", self.h * self.w * self.c)
        if not self.inputs and not (self.h and self.w and self.c):
            raise s.error("no input size: give width, height and channels (or inputs)")
        if self.inputs < 0:
            raise s.error(f"must not be negative, not {self.inputs}", "inputs")
        c, h, w = self.input_shape
        MemoryBudget(self.batch).check_input(s, c * h * w)

    def _read_policy(self, s):
        self.policy = s.str("policy", "constant")
        if self.policy not in POLICIES:
            raise s.error(f"unknown policy '{self.policy}' (Darknet knows {', '.join(POLICIES)})", "policy")
        self.burn_in = s.int("burn_in", 0)
        self.power = s.float("power", 4.0)
        self.max_batches = s.int("max_batches", 0)
        if self.policy == "step":
            self.step, self.scale = s.int("step", 1), s.float("scale", 1.0)
        elif self.policy == "steps":
            self.steps, self.scales = s.ints("steps", []), s.floats("scales", [])
            if len(self.steps) != len(self.scales):
                raise s.error(f"{len(self.steps)} steps but {len(self.scales)} scales", "scales")
        elif self.policy == "exp":
            self.gamma = s.float("gamma", 1.0)
        elif self.policy == "sigmoid":
            self.gamma, self.step = s.float("gamma", 1.0), s.int("step", 1)

    @property
    def input_shape(self):
        return (self.c, self.h, self.w) if self.h and self.w and self.c else (self.inputs, 1, 1)

    def current_batch(self):
        """get_current_batch: images seen / (batch * subdivisions)."""
        return self.seen // (self.batch * self.subdivisions)

    def current_rate(self):
        """get_current_rate: burn-in, then the cfg's learning-rate policy, in float32 as Darknet computes it."""
        n = self.current_batch()
        base = np.float32(self.learning_rate)
        if n < self.burn_in:
            return float(base * np.float32(np.float32(n / self.burn_in) ** np.float32(self.power)))
        if self.policy == "step":
            return float(base * np.float32(self.scale) ** (n // self.step))
        if self.policy == "steps":
            rate = base
            for step, scale in zip(self.steps, self.scales):
                if step > n:
                    break
                rate = np.float32(rate * np.float32(scale))
            return float(rate)
        if self.policy == "exp":
            return float(base * np.float32(self.gamma) ** n)
        if self.policy == "poly":
            return float(base * np.float32(1 - np.float32(n / self.max_batches)) ** np.float32(self.power))
        if self.policy == "random":
            return float(base * np.float32(self.rng.random()) ** np.float32(self.power))
        if self.policy == "sigmoid":
            return float(base * np.float32(1.0 / (1.0 + np.exp(self.gamma * (n - self.step)))))
        return float(base)
