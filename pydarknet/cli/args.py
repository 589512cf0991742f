"""Darknet's way of reading a command line (find_arg, find_int_arg, ...): `Args`, the flag tables, the flags a
command does not read (unknown_flags) and the files given in the wrong order (check_order)."""
import difflib
import sys

from ..errors import UsageError
from ..trackers import NAMES as TRACKERS
from ..trackers import UNKNOWN as UNKNOWN_TRACKER

# AlexeyAB's flags that pydarknet does not implement, with how many values each takes: they are reported and
# dropped, so that a value is never read as a file name.
UNSUPPORTED_FLAGS = {"-benchmark": 0, "-benchmark_layers": 0, "-letter_box": 0, "-show_imgs": 0,
                     "-check_mistakes": 0, "-dontuse_opencv": 0, "-mjpeg_port": 1, "-json_port": 1,
                     "-avgframes": 1, "-http_post_host": 1, "-time_limit_sec": 1, "-out_filename": 1, "-prefix": 1,
                     "-points": 1, "-c": 1, "-s": 1}
# Those of them a command implements: kept on its line (`detector demo ...`), dropped on every other line.
IMPLEMENTED_FLAGS = {("detector", "demo"): ("-c", "-out_filename")}
GLOBAL_FLAGS = (("-threads", "N (PYDARKNET_THREADS, else the cores)"), ("-nogpu", "off (a switch)"),
                ("-i", "N (GPU 0)"), ("-gpus", "LIST (GPU 0)"))
GLOBAL_VALUES = ("-threads", "-i", "-gpus")
# The words that ask for a command's help: --help always; -h and -help where the command reads no flag of that name
# (-h stays Darknet's integer where a command reads one).
HELP_WORDS = ("--help", "-help", "-h")


class UnknownVerb(UsageError):
    """A family (detector, classifier, dataset, yolo) without a verb, or with one it does not know: the message
    lists its verbs."""


class Args:
    """Darknet's find_arg/find_int_arg/find_float_arg/find_char_arg: flags are removed from argv as they are read.

    With `listing`, nothing is parsed: each flag a command asks for is recorded in `asked` (name, default), those
    that take a value in `valued` too, and its default returned, which is how `--help` lists a command's flags
    from the code that reads them and how main() tells the flags a command does not read. `name` is the command's
    name (its usage lines say it: `yolo` runs detector's verbs)."""

    def __init__(self, argv, listing=False, name=None):
        self.argv = list(argv)
        self.listing, self.asked, self.valued, self.name = listing, [], set(), name

    def drop_unsupported(self, keep=()):
        """Remove AlexeyAB's flags pydarknet does not implement (but those in `keep`, the command's own), each with
        its values; returns the warnings."""
        notes = []
        for name, count in UNSUPPORTED_FLAGS.items():
            while name in self.argv and name not in keep:
                i = self.argv.index(name)
                words = self.argv[i:i + 1 + count]
                del self.argv[i:i + 1 + count]
                notes.append(f"ignoring {' '.join(words)}: not supported")
        return notes

    def flag(self, name):
        if self.listing:
            self.asked.append((name, "off (a switch)"))
            return False
        if name in self.argv:
            self.argv.remove(name)
            return True
        return False

    def value(self, name, default, convert=str, shown=None):
        """The flag's value (its word removed from argv), else `default`; `shown`: the default as --help says it,
        where `default` (None) stands for one the command works out."""
        if self.listing:
            self.asked.append((name, shown or ("none" if default is None else default)))
            self.valued.add(name)
            return default
        if name not in self.argv:
            return default
        i = self.argv.index(name)
        if i + 1 >= len(self.argv):
            raise UsageError(f"{name} needs a value")
        text = self.argv[i + 1]
        del self.argv[i:i + 2]
        try:
            return convert(text)
        except ValueError:
            why = getattr(convert, "why", None) or f"not a valid {convert.__name__}"
            raise UsageError(f"{name} {text}: {why}") from None

    def positional(self, i, default=None):
        return self.argv[i] if i < len(self.argv) else default

    def asks_help(self, words):
        """Whether one of `words` asks for the command's help (HELP_WORDS, less the flags this listing read)."""
        read = {flag for flag, _ in self.asked}
        return any(word in HELP_WORDS and word not in read for word in words)


def implemented_flags(words):
    """The flags of UNSUPPORTED_FLAGS that the command on this line implements (IMPLEMENTED_FLAGS)."""
    for (name, verb), flags in IMPLEMENTED_FLAGS.items():
        if name in words and words[words.index(name) + 1:][:1] == [verb]:
            return flags
    return ()


def fraction(text):
    """A threshold's value: a float from 0 to 1."""
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError(text)
    return value


fraction.why = "thresholds are from 0 to 1 (-thresh .5 for 50%)"


def positive(text):
    """A count of iterations: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


positive.why = "needs a whole number of at least 1"


def tracker(text):
    """-tracker's name: one of trackers.py's."""
    if text not in TRACKERS:
        raise ValueError(text)
    return text


tracker.why = UNKNOWN_TRACKER


def allow_imports():
    """Lift refuse_unused_imports (cli/__init__.py) in this process: a tracker's package loads what it turns down
    (MLflow imports yaml), and Numba, which it was for, has loaded by now."""
    sys.meta_path[:] = [hook for hook in sys.meta_path if not getattr(hook, "refuses_imports", False)]


def training_flags(args):
    """The flags detector train and classifier train share, as their keyword arguments."""
    flags = dict(clear=args.flag("-clear"), seed=args.value("-seed", None, int),
                 max_batches=args.value("-max_batches", None, int), workers=args.value("-workers", 4, int),
                 chart=args.value("-chart", "chart.png"), map_every=args.value("-map_every", None, positive),
                 grad_stats=args.value("-grad_stats", None, positive), grad_floor=args.value("-grad_floor", 1e-8,
                                                                                             float),
                 tracker=args.value("-tracker", None, tracker))
    mode = args.value("-sync", None)
    args.flag("-dont_show")
    if args.listing:
        return flags
    if flags["tracker"]:
        allow_imports()
    from ..parallel.comm import require_mpi, world
    from ..parallel.replicas import SYNC_MODES, sync_for
    if mode is not None and mode not in SYNC_MODES:
        raise UsageError(f"-sync {mode}: the modes are {' and '.join(SYNC_MODES)} (the README's 'Several GPUs and "
                         f"machines')")
    if mode is not None:
        require_mpi(f"-sync {mode}")
    flags["sync"] = sync_for(mode or "allreduce", world())
    return flags


def verb_of(args, name, usages):
    """A family's verb, its first word; else the UnknownVerb that lists the verbs (`usages`: verb -> arguments)."""
    verb = args.positional(0)
    if verb not in usages:
        raise verbs_error(name, usages, verb)
    return verb


def verbs_error(name, usages, verb):
    """A family's UnknownVerb: its verbs, one usage line each (`usages`: verb -> its arguments)."""
    head = (f"usage: pydarknet {name} VERB ... (pydarknet {name} VERB --help lists a verb's flags); the verbs:"
            if verb is None else f"unknown {name} command '{verb}'; the verbs:")
    error = UnknownVerb("\n".join([head] + [f"  pydarknet {name} {v} {rest}" for v, rest in usages.items()]))
    error.verbs = list(usages)
    return error


def is_number(word):
    try:
        float(word)
        return True
    except ValueError:
        return False


def unknown_flags(argv, listing):
    """The words of argv that look like flags (a '-' first, not a number such as -0.5) and that the command, as its
    `listing` (an Args in listing mode, after a run) recorded it, does not read, nor are a value of one it does."""
    known = {flag for flag, _ in listing.asked} | {flag for flag, _ in GLOBAL_FLAGS}
    valued = listing.valued | set(GLOBAL_VALUES)
    unknown, i = [], 0
    while i < len(argv):
        word = argv[i]
        if word.startswith("-") and len(word) > 1 and word not in known and not is_number(word):
            unknown.append(word)
        i += 2 if word in valued else 1
    return unknown


def unknown_flag_note(word, listing, command, elsewhere=()):
    """`unknown flag '--thresh' (did you mean -thresh?)`: the flag the command reads that it names, or one another
    command reads (`elsewhere`: `-thresh` on detector valid), or the closest one the command reads (difflib), else
    where the command's flags are listed."""
    own, common = [flag for flag, _ in listing.asked], [flag for flag, _ in GLOBAL_FLAGS]
    meant = "-" + word.lstrip("-").lower()
    if meant not in own + common and meant in elsewhere:
        return f"unknown flag '{word}' (pydarknet {command} does not read {meant}; --help lists what it reads)"
    close = (difflib.get_close_matches(meant, own, n=1, cutoff=0.7) or      # the global flags: only near misses
             difflib.get_close_matches(meant, common, n=1, cutoff=0.8))
    return (f"unknown flag '{word}' " +
            (f"(did you mean {close[0]}?)" if close else f"(pydarknet {command} --help lists its flags)"))


ORDINALS = ("first", "second", "third", "fourth")
WANTED = {"data": "a .data file", "cfg": "a .cfg file", "weights": "a .weights file"}
GOT = {"data": "a .data file", "cfg": "a cfg", "binary": "a binary file"}


IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"BM", b"GIF8")


def file_kind(path):
    """What a file on the line looks like, cheaply, from its first 4 KiB: ('cfg', '[net] on line 8') where a
    `[section]` line is there (the first one named), ('data', 'classes=3 on line 1') where the first line that is
    not blank or a comment is a key=value line and no section follows, ('binary', ...) where a NUL byte is there (a
    .weights file, or an image); None where it cannot be read or looks like none of these (a .names file, a broken
    cfg: the library then says what is wrong with it)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if b"\0" in head:
        return "binary", "an image" if head.startswith(IMAGE_MAGIC) else "a .weights file?"
    lines = head.decode("utf-8", "replace").splitlines()
    texts = [(number, line.strip()) for number, line in enumerate(lines[:-1] if len(head) == 4096 else lines, 1)]
    texts = [(number, text) for number, text in texts if text and text[0] not in "#;"]
    for number, text in texts:
        if text.startswith("[") and "]" in text:
            return "cfg", f"{text[:text.index(']') + 1]} on line {number}"
    if texts and "=" in texts[0][1]:
        return "data", f"{texts[0][1][:40]} on line {texts[0][0]}"
    return None


def check_order(words, kinds, usage):
    """Refuse files given in the wrong order, or with one left out (`detector test CFG WEIGHTS IMG`): each word of
    `words` that file_kind recognises as another kind than the one `kinds` expects at its place is a UsageError
    that names both (`expected a .data file first, got a cfg (yolo.cfg: [net] on line 8)`) and the usage line."""
    for place, (word, wanted) in enumerate(zip(words, kinds)):
        found = file_kind(word)
        if wanted is None or found is None or found[0] == wanted or (wanted == "weights" and found[0] == "binary"):
            continue
        raise UsageError(f"expected {WANTED[wanted]} {ORDINALS[place]}, got {GOT[found[0]]} ({word}: {found[1]}); "
                         f"{usage}")
