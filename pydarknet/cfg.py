"""Darknet's INI dialect: `.cfg` networks, `.data` files and `.names` lists.

Darknet strips every blank from a line before it looks at it (so `mask = 3, 4` is `mask=3,4`), skips lines that
start with `#` or `;`, opens a section at `[...]` and otherwise splits `key=value` at the first `=`. The first of two
equal keys wins, as `option_find` returns the first match. Numbers are checked strictly: where Darknet's `atoi`
would turn `3x` into 3, we say which file, line and key is wrong.

A `.data` file is read the same way but for one departure: a value keeps the blanks inside it and loses only those at
its ends, so that `train=/data/my set/train.txt` names the folder `my set` (Darknet would read `/data/myset/...`).
"""
import math
import os
import re

from .errors import CfgError


INT = re.compile(r"[+-]?[0-9]+(\.0*)?\Z")     # "3.0" is 3, as atoi reads it; "3.5" and "1e3" are errors
FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")   # unambiguous: linear time
INT_RANGE = range(-2**31, 2**31)             # Darknet reads ints into a C int and floats into a C float
FLOAT_MAX = 3.4028234663852886e38
BLANKS = str.maketrans("", "", " \t\r")    # darknet's strip(): these go wherever they are in the line


def _visible(text):
    """The text with control and other unprintable characters escaped, so a message about it stays one line."""
    return "".join(ch if ch.isprintable() or ch == "\t" else ascii(ch)[1:-1] for ch in text)


def _lines(text):
    """Lines as darknet's fgetl splits them: at newline only."""
    return text.lstrip("\ufeff").split("\n")


def _to_int(text):
    if not INT.match(text) or int(text.split(".")[0]) not in INT_RANGE:
        raise ValueError(text)
    return int(text.split(".")[0])


def _to_float(text):
    if not FLOAT.match(text) or not abs(float(text)) <= FLOAT_MAX:
        raise ValueError(text)
    return float(text)


class Section:
    """One `[name]` block: its options as written, where it came from, and which options were read."""

    def __init__(self, name, path, line):
        self.name = name            # without brackets, lower case: "convolutional"
        self.path = path
        self.line = line            # line number of the "[name]" header, 1-based
        self.options = {}           # key -> value string (first occurrence)
        self.lines = {}             # key -> line number
        self.used = set()
        self.repeated = []          # (key, value, line) of keys given again: never read, so reported unused

    def __repr__(self):
        return f"Section({self.name!r}, {self.options!r})"

    def where(self, key=None):
        line = self.lines.get(key, self.line)
        return f"{self.path}:{line}: [{self.name}]" + (f" {key}" if key else "")

    def error(self, message, key=None):
        return CfgError(f"{self.where(key)}: {message}")

    def has(self, key):
        return key in self.options

    def _get(self, key):
        self.used.add(key)
        return self.options.get(key)

    def str(self, key, default=None):
        value = self._get(key)
        return default if value is None else value

    def _number(self, key, default, convert, kind):
        value = self._get(key)
        if value is None:
            if default is None:
                raise self.error("is required", key)
            return default
        try:
            number = convert(value)
        except ValueError:
            raise self.error(f"'{value}' is not a {kind}", key) from None
        if not math.isfinite(number):
            raise self.error(f"'{value}' is not a finite number", key)
        return number

    def int(self, key, default=None):
        return self._number(key, default, _to_int, "32-bit integer")

    def float(self, key, default=None):
        return self._number(key, default, _to_float, "32-bit float")

    def _list(self, key, default, convert, kind):
        value = self._get(key)
        if value is None or value == "":
            return list(default) if default is not None else []
        items = [item for item in value.split(",")]
        if items and items[-1] == "":        # "1,2," is how some cfgs end a list
            items.pop()
        try:
            numbers = [convert(item) for item in items]
        except ValueError:
            raise self.error(f"'{value}' is not a list of {kind}", key) from None
        if kind == "numbers" and not all(math.isfinite(n) for n in numbers):
            raise self.error(f"'{value}' holds a number that is not finite", key)
        return numbers

    def ints(self, key, default=None):
        return self._list(key, default, _to_int, "integers")

    def floats(self, key, default=None):
        return self._list(key, default, _to_float, "numbers")

    def unused(self):
        unused = [(key, self.options[key], self.lines[key]) for key in self.options if key not in self.used]
        return sorted(unused + self.repeated, key=lambda option: option[2])


def read_text(path, what):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CfgError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise CfgError(f"{path}: is a directory, not a {what}") from None
    except OSError as e:
        raise CfgError(f"{path}: cannot read {what}: {e.strerror}") from None
    if b"\0" in data:
        raise CfgError(f"{path}: is not a text {what} (it holds NUL bytes)")
    return data.decode("utf-8", errors="replace")


def parse_sections(text, path="<string>"):
    """Split Darknet INI text into Sections, as darknet's read_cfg does."""
    sections = []
    current = None
    for number, raw in enumerate(_lines(text), 1):
        line = _visible(raw.translate(BLANKS))
        if not line or line[0] in "#;":
            continue
        raw = _visible(raw)
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise CfgError(f"{path}:{number}: malformed section header '{raw.strip()}'")
            current = Section(line[1:-1].lower(), path, number)
            sections.append(current)
            continue
        if "=" not in line:
            raise CfgError(f"{path}:{number}: cannot parse '{raw.strip()}' (expected key=value)")
        if current is None:
            raise CfgError(f"{path}:{number}: option '{raw.strip()}' comes before any [section]")
        key, value = line.split("=", 1)
        if not key:
            raise CfgError(f"{path}:{number}: option without a key '{raw.strip()}'")
        if key not in current.options:
            current.options[key] = value
            current.lines[key] = number
        else:
            current.repeated.append((key, value, number))
    return sections


def read_cfg(path):
    """Read a network .cfg: a list of Sections, the first of which must be [net] or [network]."""
    path = os.fsdecode(path)
    sections = parse_sections(read_text(path, "cfg file"), path)
    if not sections:
        raise CfgError(f"{path}: holds no sections; a network cfg starts with [net]")
    if sections[0].name not in ("net", "network"):
        first = sections[0]
        raise CfgError(f"{path}:{first.line}: first section is [{first.name}], a network cfg starts with [net]")
    return sections


def read_data(path):
    """Read a .data file (classes, train, valid, names, backup, eval, results) into a dict of strings. Keys lose
    every blank as in Darknet; values only those at their ends (Darknet strips them all: see DataConfig.path_of)."""
    path = os.fsdecode(path)
    options, lines = {}, {}
    for number, raw in enumerate(_lines(read_text(path, "data file")), 1):
        line = raw.translate(BLANKS)
        if not line or line[0] in "#;":
            continue
        if "=" not in line or line.startswith("="):
            raise CfgError(f"{path}:{number}: cannot parse '{raw.strip()}' (expected key=value)")
        key, value = raw.split("=", 1)
        key, value = key.translate(BLANKS), value.strip(" \t\r")
        if key not in options:
            options[key], lines[key] = value, number
    return DataConfig(path, options, lines)


class DataConfig(dict):
    """The options of a .data file; `.int(key, default)` for the numeric ones, paths as written."""

    def __init__(self, path, options, lines=None):
        super().__init__(options)
        self.path = path
        self.lines = lines or {}

    def _found(self, value):
        """The value as a path that exists: as written (relative to the working folder), else relative to the
        project the .data file sits in or to its folder; None when none of them exists."""
        if os.path.exists(value):
            return value
        if os.path.isabs(value):
            return None
        here = os.path.dirname(os.path.abspath(self.path))
        for base in (os.path.dirname(here), here):
            if os.path.exists(os.path.join(base, value)):
                return os.path.join(base, value)
        return None

    def path_of(self, key, default):
        """A path option as Darknet reads it (relative to the working folder); when that does not exist, relative
        to the project the .data file sits in (cfg/coco.data names data/coco.names), so it works from anywhere.

        A value with blanks inside that names nothing, where Darknet (which strips them) would find a file, is
        refused: it must not silently read another dataset, nor fail without saying why."""
        value = self.get(key, default)
        found = self._found(value)
        if found is not None:
            return found
        despaced = value.translate(BLANKS)
        if key in self and despaced != value and self._found(despaced) is not None:
            raise CfgError(f"{self.where(key)}: {key}={value}: no such file; Darknet, which strips every space "
                           f"from a .data line, would read {despaced} (pydarknet keeps the spaces inside a value)")
        return value

    def file_of(self, key, default):
        """path_of for a file the command reads: a missing key falls back to Darknet's default only where that
        exists; otherwise one line naming the .data file and the key, before anything else is done."""
        if key not in self and self._found(default) is None:
            raise CfgError(f"{self.path}: no '{key}=' line (Darknet's default {default} does not exist)")
        if key in self and not self[key]:
            raise CfgError(f"{self.where(key)}: '{key}=' names no file")
        return self.path_of(key, default)

    def where(self, key):
        return f"{self.path}:{self.lines[key]}" if key in self.lines else self.path

    def int(self, key, default=None):
        value = self.get(key)
        if value is None:
            if default is None:
                raise CfgError(f"{self.path}: '{key}' is required")
            return default
        try:
            return _to_int(value)
        except ValueError:
            raise CfgError(f"{self.path}:{self.lines.get(key, 0)}: {key}={value} is not an integer") from None


def read_names(path):
    """Read a .names file: one class name a line, as darknet's get_labels keeps them."""
    path = os.fsdecode(path)
    names = [line.rstrip("\r") for line in _lines(read_text(path, "names file"))]
    while names and not names[-1].strip():
        names.pop()
    return names
