"""SPACE files: what `pydarknet tune` searches, written in Darknet's cfg style, and the cfg text of a trial.

    [net]
    learning_rate=log(0.0001,0.01)      # log-uniform; bounds > 0
    momentum=uniform(0.8,0.98)          # uniform(a,b[,step])
    batch=choice(16,32,64)              # any values; int(a,b[,step]) for integers
    [yolo]
    ignore_thresh=uniform(0.5,0.8)      # every [yolo] section of the cfg gets the trial's value

A key is searched in every section of the cfg of that layer type ([conv] and [convolutional] are one type, as are
[net] and [network]). The file is read with the cfg parser (its blanks, comments and line numbers), then checked
against the cfg: each mistake is one line `SPACE:LINE: ...` (a SpaceError) before anything is created.
"""
import math
import re

from ..cfg import FLOAT, INT, parse_sections, read_cfg, read_text
from ..errors import CfgError
from ..layers import LAYERS

DISTRIBUTION = re.compile(r"([a-z]+)\((.*)\)\Z")
DISTRIBUTIONS = ("uniform", "log", "int", "choice")
# The default space (no -space): [net]'s optimiser keys and its colour augmentation. They change neither the
# network's shape nor its weights file, nor what a step costs, so trials compare at equal cost and the best
# trial's weights load into CFG; each range holds the cfg's own value (the study's trial 0).
DEFAULT_KEYS = ("learning_rate", "momentum", "decay", "hue", "saturation", "exposure")


class SpaceError(CfgError):
    """A SPACE file that cannot be searched: one line naming the file and line."""


def number(text):
    """An int where the text is one ("16", "16.0" stays a float), else a float, else the text itself."""
    if re.fullmatch(r"[+-]?[0-9]+", text):
        return int(text)
    if FLOAT.match(text):
        return float(text)
    return text


def layer_type(name):
    """The layer type a section name stands for: [net] and [network] are one, as are a layer's aliases."""
    return "net" if name in ("net", "network") else LAYERS.get(name, name)


class Param:
    """One searched key: `section` (as the SPACE file names it), `key`, the distribution `kind` and its `args`,
    and where it was written (`path`, `line`; `header`: its section's line)."""

    def __init__(self, section, key, kind, args, path, line, header=None):
        self.section, self.key, self.kind, self.args, self.path, self.line = section, key, kind, args, path, line
        self.header = header or line

    @property
    def name(self):
        """The study's name for it: `net.learning_rate`, `yolo.ignore_thresh`."""
        return f"{'net' if self.section == 'network' else self.section}.{self.key}"

    def error(self, message):
        return SpaceError(f"{self.path}:{self.line}: [{self.section}] {self.key}: {message}")

    @property
    def text(self):
        """The distribution as a SPACE file writes it: `log(0.0001,0.01)`."""
        return f"{self.kind}({','.join(format_value(a) for a in self.args)})"

    @property
    def stepped(self):
        return self.kind == "choice" or (self.kind in ("uniform", "int") and len(self.args) == 3)

    def distribution(self):
        """Optuna's distribution of this key."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
        if self.kind == "choice":
            return CategoricalDistribution(self.args)
        if self.kind == "int":
            return IntDistribution(self.args[0], self.args[1], step=self.args[2] if len(self.args) == 3 else 1)
        if self.kind == "log":
            return FloatDistribution(self.args[0], self.args[1], log=True)
        return FloatDistribution(self.args[0], self.args[1], step=self.args[2] if len(self.args) == 3 else None)

    def grid(self):
        """The grid's values of a stepped key: the choices, or a, a+step, ... up to b."""
        if self.kind == "choice":
            return list(self.args)
        a, b, step = self.args
        count = int(math.floor((b - a) / step + 1e-9)) + 1
        values = [a + k * step for k in range(count)]
        return [int(v) for v in values] if self.kind == "int" else [float(format_value(v)) for v in values]

    def suggest(self, trial):
        """The trial's value of this key (Optuna's suggest_* for its distribution)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.args))
        a, b, *step = self.args
        if self.kind == "int":
            return trial.suggest_int(self.name, a, b, step=step[0] if step else 1)
        return trial.suggest_float(self.name, a, b, log=self.kind == "log", step=step[0] if step else None)

    def holds(self, value):
        """Whether `value` (the cfg's own) lies in this key's range."""
        if self.kind == "choice":
            return value in self.args
        return self.args[0] <= value <= self.args[1]


def parse_distribution(text, where):
    """(kind, args) of `uniform(a,b[,step])`, `log(a,b)`, `int(a,b[,step])` or `choice(v1,...)`."""
    match = DISTRIBUTION.match(text)
    if not match or match.group(1) not in DISTRIBUTIONS:
        name = match.group(1) if match else text
        raise SpaceError(f"{where}: unknown distribution '{name}' (the distributions: uniform(a,b[,step]), "
                         f"log(a,b), int(a,b[,step]), choice(v1,...))")
    kind, words = match.group(1), [w for w in match.group(2).split(",")]
    if kind == "choice":
        values = [number(w) for w in words if w != ""]
        if not values:
            raise SpaceError(f"{where}: choice() is empty: it needs at least one value")
        return kind, tuple(values)
    convert = int if kind == "int" else float
    pattern = INT if kind == "int" else FLOAT
    counts = (2,) if kind == "log" else (2, 3)
    if len(words) not in counts or not all(pattern.match(w) for w in words):
        wanted = "log(a,b)" if kind == "log" else f"{kind}(a,b[,step])"
        raise SpaceError(f"{where}: {kind}({match.group(2)}) is not {wanted} with "
                         f"{'integers' if kind == 'int' else 'numbers'}")
    args = tuple(convert(w.split(".")[0]) if kind == "int" else convert(w) for w in words)
    if args[0] >= args[1]:
        raise SpaceError(f"{where}: {text}: the lower bound must be below the upper ({args[0]} >= {args[1]})")
    if kind == "log" and args[0] <= 0:
        raise SpaceError(f"{where}: {text}: a log range's bounds must be above 0")
    if len(args) == 3 and args[2] <= 0:
        raise SpaceError(f"{where}: {text}: the step must be above 0")
    return kind, args


def parse_space(text, path):
    """The Params of a SPACE file's text (its syntax checked; check_space checks it against a cfg)."""
    params = []
    for section in parse_sections(text, path):
        for key, value in section.options.items():
            where = f"{path}:{section.lines[key]}: [{section.name}] {key}"
            kind, args = parse_distribution(value, where)
            params.append(Param(section.name, key, kind, args, path, section.lines[key], section.line))
        for key, _, line in section.repeated:
            raise SpaceError(f"{path}:{line}: [{section.name}] {key}: given twice (its first line is "
                             f"{section.lines[key]})")
    if not params:
        raise SpaceError(f"{path}: holds no keys to search (e.g. [net] learning_rate=log(0.0001,0.01))")
    return params


def read_space(path):
    return parse_space(read_text(path, "space file"), path)


def sections_read(cfgfile):
    """The cfg's Sections after a network was built from them (batch 1: little memory), so that each one's
    `used` holds every key its layer reads."""
    from ..network import Network
    sections = read_cfg(cfgfile)
    net = sections[0]
    own = dict(net.options)
    net.options.update(batch="1", subdivisions="1")
    try:
        Network(sections, cfgfile, device="cpu")
    finally:
        net.options = own
    return sections


def check_space(params, sections, cfgfile, grid=False):
    """Each Param against the cfg: its section type is there, its layer reads the key; under the grid sampler it is
    stepped (a choice or a range with a step)."""
    for param in params:
        matching = [s for s in sections if layer_type(s.name) == layer_type(param.section)]
        if not matching:
            raise SpaceError(f"{param.path}:{param.header}: [{param.section}]: {cfgfile} has no [{param.section}] "
                             f"section")
        if not all(param.key in s.used for s in matching):
            raise param.error(f"the [{matching[0].name}] layer does not read {param.key} (the cfg parser would "
                              f"report it as an unused field)")
        if grid and not param.stepped:
            raise param.error(f"-sampler grid needs a choice or a stepped range (uniform(a,b,step), "
                              f"int(a,b,step)), not {param.text}")
    names = [p.name for p in params]
    for param in params:
        if names.count(param.name) > 1:
            raise param.error("given in two sections of the same layer type")


def cfg_values(params, sections):
    """The cfg's own value of each Param (its first section of that type; the layer's default where the cfg does
    not set the key), as the Param's type; None where it cannot be read that way."""
    values = {}
    for param in params:
        section = next(s for s in sections if layer_type(s.name) == layer_type(param.section))
        text = section.options.get(param.key)
        values[param.name] = None if text is None else number(text)
        if param.kind == "int" and isinstance(values[param.name], float):
            values[param.name] = None
    return values


def default_space(sections):
    """The SPACE text searched without -space (DEFAULT_KEYS, ranges around the cfg's values)."""
    net = sections[0]

    def own(key, default):
        try:
            return float(net.options.get(key, default))
        except ValueError:
            return default
    lr, momentum, decay = own("learning_rate", .001), own("momentum", .9), own("decay", .0001)
    hue, saturation, exposure = own("hue", 0), own("saturation", 1), own("exposure", 1)
    lines = ["# pydarknet tune's default space: [net]'s optimiser keys and colour augmentation, around the cfg's",
             "# values (pydarknet/tune/space.py DEFAULT_KEYS says why these)", "[net]",
             f"learning_rate=log({format_value(lr / 10)},{format_value(lr * 10)})",
             f"momentum=uniform({format_value(min(.8, momentum))},{format_value(max(.98, momentum))})",
             f"decay=log({format_value(max(decay, 1e-6) / 10)},{format_value(max(decay, 1e-6) * 10)})",
             f"hue=uniform(0,{format_value(max(.2, hue))})",
             f"saturation=uniform(1,{format_value(max(2, saturation))})",
             f"exposure=uniform(1,{format_value(max(2, exposure))})"]
    return "\n".join(lines) + "\n"


def format_value(value):
    """A value as a cfg line writes it: ints as they are, floats to 7 significant digits (a C float's)."""
    if isinstance(value, float):
        return f"{value:.7g}"
    return str(value)


def cfg_with_values(text, values, params, sections, schedule=None):
    """CFG's text with each searched key's line (in every section of its type) set to the trial's value, a line
    added after the section header where the section does not have the key; `schedule` ({key: value} of [net])
    sets max_batches, steps, burn_in for a trial. Nothing else changes: comments, order, the other lines."""
    lines = text.split("\n")
    inserts = {}        # header line number -> lines added after it
    changes = [(p.section, p.key, values[p.name]) for p in params if p.name in values]
    changes += [("net", key, value) for key, value in (schedule or {}).items()]
    for section_name, key, value in changes:
        for s in sections:
            if layer_type(s.name) != layer_type(section_name):
                continue
            if key in s.lines:
                lines[s.lines[key] - 1] = f"{key}={format_value(value)}"
            else:
                inserts.setdefault(s.line, []).append(f"{key}={format_value(value)}")
    for header in sorted(inserts, reverse=True):
        lines[header:header] = inserts[header]
    return "\n".join(lines)
