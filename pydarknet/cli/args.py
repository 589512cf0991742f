"""Darknet's way of reading a command line (find_arg, find_int_arg, ...): `Args`, and the flag tables."""
from ..errors import UsageError

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


class Args:
    """Darknet's find_arg/find_int_arg/find_float_arg/find_char_arg: flags are removed from argv as they are read.

    With `listing`, nothing is parsed: each flag a command asks for is recorded in `asked` (name, default) and
    its default returned, which is how `--help` lists a command's flags from the code that reads them."""

    def __init__(self, argv, listing=False):
        self.argv = list(argv)
        self.listing, self.asked = listing, []

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

    def value(self, name, default, convert=str):
        if self.listing:
            self.asked.append((name, "none" if default is None else default))
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
            raise UsageError(f"{name} {text}: not a valid {convert.__name__}") from None

    def positional(self, i, default=None):
        return self.argv[i] if i < len(self.argv) else default


def implemented_flags(words):
    """The flags of UNSUPPORTED_FLAGS that the command on this line implements (IMPLEMENTED_FLAGS)."""
    for (name, verb), flags in IMPLEMENTED_FLAGS.items():
        if name in words and words[words.index(name) + 1:][:1] == [verb]:
            return flags
    return ()


def training_flags(args):
    """The flags detector train and classifier train share, as their keyword arguments."""
    flags = dict(clear=args.flag("-clear"), seed=args.value("-seed", None, int),
                 max_batches=args.value("-max_batches", None, int), workers=args.value("-workers", 4, int),
                 chart=args.value("-chart", "chart.png"))
    args.flag("-dont_show")
    return flags
