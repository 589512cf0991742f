"""Darknet's command line: the same verbs, arguments and flags, and what AlexeyAB's fork added for users.

    pydarknet detect CFG WEIGHTS [IMG] [-thresh T] [-save_labels]
    pydarknet detector test DATA CFG WEIGHTS [IMG] [-thresh T] [-hier H] [-out NAME|result.json]
                                                  [-ext_output] [-dont_show] [-save_labels]
    pydarknet detector train DATA CFG [WEIGHTS] [-clear] [-map] [-seed K] [-max_batches N] [-workers N]
    pydarknet detector valid DATA CFG WEIGHTS [-out PREFIX]     (results/comp4_det_test_<class>.txt or coco json)
    pydarknet detector recall DATA CFG WEIGHTS
    pydarknet detector map DATA CFG WEIGHTS [-thresh T] [-iou_thresh I]
    pydarknet partial CFG WEIGHTS OUT N
    pydarknet randweights CFG OUT [-seed K]   (sane random weights, for trying a cfg without training)
    pydarknet export CFG WEIGHTS OUT.onnx [-batch N] [-decode]   (ONNX, opset 13: pip install 'pydarknet[export]')
    pydarknet detector demo DATA CFG WEIGHTS [VIDEO] [-c N] [-out_filename OUT.avi|OUT.mp4] [-thresh T] [-hier H]
                                                  [-ext_output] [-dont_show]
    pydarknet detector calc_anchors DATA -width W -height H [-num_of_clusters K] [-show] [-seed S]
    pydarknet dataset shapes OUTDIR [-n N] [-size S] [-seed K]   (a small detection dataset, no download)
    pydarknet dataset shapes-cls OUTDIR [-n N] [-size S] [-seed K]   (one shape an image, for classifiers)
    pydarknet dataset from-voc VOCDEVKIT OUTDIR [-names FILE] [-difficult]
    pydarknet dataset from-coco INSTANCES.json IMAGEDIR OUTDIR [-list train|valid]
    pydarknet dataset check DATA [CFG] [-fast]
    pydarknet yolo train|test|valid CFG [WEIGHTS] [IMG]   (Darknet's v1 verbs, on cfg/voc.data)
    pydarknet classifier train|valid|predict|label DATA CFG [WEIGHTS] [IMG] [-t K] [-clear] [-seed S]

Flags anywhere on the line, as Darknet's find_arg reads them: -threads N, -nogpu, -i N, -gpus 0,1.
`pydarknet CMD [VERB] --help` lists a command's flags and their defaults (-h stays Darknet's integer where a
command reads one).
"""
import os
import sys
import warnings

from . import settings
from .errors import DarknetError

USAGE = __doc__.split("\n\n", 1)[1]


class UsageError(DarknetError):
    pass


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


def set_threads(n):
    """Threads for Numba's kernels and for the GEMMs alike (backend/threads.py shares single-threaded BLAS calls
    out over as many)."""
    import numba
    from .backend import threads
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    threads.limit_blas(again=True)


def _detector_evaluate(verb, args):
    """detector valid | recall | map (pydarknet/evaluate.py)."""
    from . import evaluate
    outfile = args.value("-out", None)
    thresh = args.value("-thresh", .25, float)
    iou_thresh = args.value("-iou_thresh", .5, float)
    args.flag("-dont_show")
    if len(args.argv) < 4:
        raise UsageError(f"usage: pydarknet detector {verb} DATA CFG WEIGHTS")
    data, cfg, weights = args.argv[1:4]
    if verb == "valid":
        for path in evaluate.validate_detector(data, cfg, weights, outfile):
            print(f"Saved {path}", file=sys.stderr)
    elif verb == "recall":
        evaluate.validate_detector_recall(data, cfg, weights)
    else:
        evaluate.detector_map(data, cfg, weights, thresh, iou_thresh)
    return 0


def _detector_train(args):
    """detector train (pydarknet/trainer.py)."""
    from .trainer import train_detector
    calc_map = args.flag("-map")
    flags = training_flags(args)
    if len(args.argv) < 3:
        raise UsageError("usage: pydarknet detector train DATA CFG [WEIGHTS] [-clear] [-map]")
    data, cfg = args.argv[1:3]
    train_detector(data, cfg, args.positional(3), calc_map=calc_map, **flags)
    return 0


def training_flags(args):
    """The flags detector train and classifier train share, as their keyword arguments."""
    flags = dict(clear=args.flag("-clear"), seed=args.value("-seed", None, int),
                 max_batches=args.value("-max_batches", None, int), workers=args.value("-workers", 4, int),
                 chart=args.value("-chart", "chart.png"))
    args.flag("-dont_show")
    return flags


def _detector(args):
    verb = args.positional(0)
    if verb in ("valid", "recall", "map"):
        return _detector_evaluate(verb, args)
    if verb == "train":
        return _detector_train(args)
    if verb == "calc_anchors":
        from .anchors import command
        return command(args)
    if verb == "demo":
        from .demo import command
        return command(args)
    if verb != "test":
        raise UsageError(f"unknown detector command '{verb}' (pydarknet -h lists the commands)")
    thresh = args.value("-thresh", .5, float)
    hier = args.value("-hier", .5, float)
    outfile = args.value("-out", None)
    ext_output = args.flag("-ext_output")
    save_labels = args.flag("-save_labels")
    args.flag("-dont_show")          # no window is ever opened; accepted for AlexeyAB's scripts
    args.flag("-fullscreen")
    if len(args.argv) < 4:
        raise UsageError("usage: pydarknet detector test DATA CFG WEIGHTS [IMG] [-thresh T] [-save_labels]")
    data, cfg, weights = args.argv[1:4]
    from .predict import detect_images
    return detect_images(data, cfg, weights, args.positional(4), thresh, hier, outfile, ext_output, save_labels)


def _detect(args):
    thresh = args.value("-thresh", .5, float)
    outfile = args.value("-out", None)
    ext_output = args.flag("-ext_output")
    save_labels = args.flag("-save_labels")
    args.flag("-dont_show")
    if len(args.argv) < 2:
        raise UsageError("usage: pydarknet detect CFG WEIGHTS [IMG] [-thresh T] [-save_labels]")
    cfg, weights = args.argv[:2]
    coco = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cfg", "coco.data")
    data = "cfg/coco.data" if os.path.exists("cfg/coco.data") else coco
    from .predict import detect_images
    return detect_images(data, cfg, weights, args.positional(2), thresh, .5, outfile, ext_output, save_labels)


def _partial(args):
    if len(args.argv) < 4:
        raise UsageError("usage: pydarknet partial CFG WEIGHTS OUT N")
    try:
        count = int(args.argv[3])
    except ValueError:
        raise UsageError(f"partial: N must be a layer count, not '{args.argv[3]}'") from None
    from .weights import partial
    return partial(args.argv[0], args.argv[1], args.argv[2], count)


def _randweights(args):
    seed = args.value("-seed", 0, int)
    if len(args.argv) < 2:
        raise UsageError("usage: pydarknet randweights CFG OUT [-seed K]")
    from .weights import randweights
    return randweights(args.argv[0], args.argv[1], seed)


def _export(args):
    from .export import command
    return command(args)


def _classifier(args):
    from .classifier import command
    return command(args)


def _dataset(args):
    verb = args.positional(0)
    if verb == "shapes":
        from .shapes import main as shapes_main
        return shapes_main(args.argv[1:])
    if verb == "shapes-cls":
        from .shapes_cls import main as shapes_cls_main
        return shapes_cls_main(args.argv[1:])
    if verb in ("from-voc", "from-coco"):
        from . import dataset
        return (dataset.from_voc_command if verb == "from-voc" else dataset.from_coco_command)(args)
    if verb == "check":
        from .check import command
        return command(args)
    raise UsageError("usage: pydarknet dataset shapes|shapes-cls|from-voc|from-coco|check ... (pydarknet -h lists "
                     "them)")


def _yolo(args):
    """Darknet's `yolo train|test|valid` (v1), which hard-code their data paths: here cfg/voc.data."""
    verb = args.positional(0)
    if verb not in ("train", "test", "valid"):
        raise UsageError("usage: pydarknet yolo train|test|valid CFG [WEIGHTS] [IMG]")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    data = "cfg/voc.data" if os.path.exists("cfg/voc.data") else os.path.join(root, "cfg", "voc.data")
    args.argv[1:1] = [data]
    return _detector(args)


COMMANDS = {"detector": _detector, "detect": _detect, "partial": _partial, "randweights": _randweights,
            "export": _export, "dataset": _dataset, "yolo": _yolo, "classifier": _classifier}


def select_device(nogpu, index, gpus):
    """Darknet's -nogpu, -i N and -gpus 0,1, for the networks this command builds ($PYDARKNET_GPU overrides them).
    As in Darknet, -i and -gpus only matter in a GPU build (`make GPU=1`); one GPU per process for now: the first
    of -gpus."""
    from . import backend
    backend.request_device(None)
    if nogpu:
        backend.request_device("cpu")
    elif backend.build_wants_gpu() and (gpus or index is not None):
        first = gpus.split(",")[0] if gpus else index
        backend.request_device(backend.parse_device(first, "-gpus" if gpus else "-i"))


class _Refuse:
    """An import hook that turns the imports of some modules down (see refuse_unused_imports)."""

    def __init__(self, names):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name in self.names:
            raise ImportError(f"{name} is not loaded by the pydarknet command")
        return None


def refuse_unused_imports():
    """Turn down, for the command's process, imports Numba makes that pydarknet's kernels do not need.

    - Loading a cached kernel rebuilds the modules its code refers to; one of them (numba.np.arraymath) imports
      scipy.linalg to see whether np.dot can run compiled (0.3-0.7 s); Numba's set-up imports cffi (0.06 s).
    - `import numba` imports yaml (0.02 s) to read a .numba_config.yaml, which is then only needed when there is one.
    Not done on `import pydarknet` or in main(): a program's own Numba code may want them."""
    if any(isinstance(hook, _Refuse) for hook in sys.meta_path):
        return
    names = {"scipy.linalg", "cffi"} | (set() if os.path.exists(".numba_config.yaml") else {"yaml"})
    sys.meta_path.insert(0, _Refuse(names - set(sys.modules)))


# Where none of these is set before numpy loads its BLAS, the command sets them to 1: the library then starts on
# one thread, as backend/threads.py wants it, and threadpoolctl need not find and limit it (0.01-0.02 s).
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def prepare_process():
    """What the command's own process does before it loads numpy and Numba (run() does it; main(), which tests
    and programs call in their own processes, does not): refuse_unused_imports, BLAS on one thread from the start,
    and jit.light_cache_loads."""
    refuse_unused_imports()
    blas_by_environment = "numpy" not in sys.modules and not any(v in os.environ for v in BLAS_THREAD_VARIABLES)
    if blas_by_environment:
        os.environ.update(dict.fromkeys(BLAS_THREAD_VARIABLES, "1"))
    from . import jit
    from .backend import threads as gemm_threads
    jit.light_cache_loads()
    if blas_by_environment:
        gemm_threads.blas_limited_by_environment()


def implemented_flags(words):
    """The flags of UNSUPPORTED_FLAGS that the command on this line implements (IMPLEMENTED_FLAGS)."""
    for (name, verb), flags in IMPLEMENTED_FLAGS.items():
        if name in words and words[words.index(name) + 1:][:1] == [verb]:
            return flags
    return ()


def command_help(name, command, args, keep=()):
    """`--help`: the command's usage line and every flag it reads, with its default (see Args's listing)."""
    args.argv = args.argv[:1] if name in ("detector", "dataset", "yolo", "classifier") else []  # only the verb
    args.listing = True
    usage = f"usage: pydarknet {name} ..."
    try:
        command(args)
    except DarknetError as e:       # the command stops at its missing arguments, having read its flags
        usage = str(e)
    print(usage)
    print("flags (default):")
    for flag, default in args.asked:
        print(f"  {flag:<18} {default}")
    for flag, default in GLOBAL_FLAGS:
        print(f"  {flag:<18} {default}")
    print("AlexeyAB's flags accepted and ignored (values they take): " +
          ", ".join(f"{flag} {count}" for flag, count in UNSUPPORTED_FLAGS.items() if flag not in keep))
    return 0


def main(argv=None):
    words = list(sys.argv[1:] if argv is None else argv)
    asks_help = "--help" in words and words[:2] not in (["dataset", "shapes"], ["dataset", "shapes-cls"])  # own help
    args = Args([w for w in words if w != "--help"] if asks_help else words)
    warnings.formatwarning = lambda message, category, *rest: f"Warning: {message}\n"
    try:
        keep = implemented_flags(words)
        for note in args.drop_unsupported(keep):
            print(f"pydarknet: {note}", file=sys.stderr)
        threads = args.value("-threads", settings.threads(), int)
        select_device(args.flag("-nogpu"), args.value("-i", None), args.value("-gpus", None))
        if threads:
            set_threads(threads)
        command = COMMANDS.get(args.positional(0))
        if command is None:
            if args.positional(0) in (None, "-h", "--help", "help"):
                print(USAGE)
                return 0 if args.positional(0) else 2
            raise UsageError(f"unknown command '{args.positional(0)}' (pydarknet -h lists the commands)")
        name = args.argv.pop(0)
        return command_help(name, command, args, keep) if asks_help else command(args)
    except UsageError as e:
        print(f"pydarknet: {e}", file=sys.stderr)
        return 2
    except DarknetError as e:
        print(f"pydarknet: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:      # 130, as a shell reports SIGINT; training says what it saved
        print(f"pydarknet: interrupted{f' ({e})' if str(e) else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:     # output piped into `head`: stop quietly, as C programs do
        sys.stdout = open(os.devnull, "w")
        return 141


def run():
    """The `pydarknet` program (and `python -m pydarknet`): prepare_process(), main(), then out of the process as
    soon as its output is flushed. The interpreter's teardown (Numba's and LLVM's) took 0.15-0.4 s of every command, and nothing is
    left to write by then: files are closed and weights renamed into place before main returns."""
    prepare_process()
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):       # a reader that went away, or a stream already closed
        pass
    os._exit(code)
