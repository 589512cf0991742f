"""Darknet's command line: the same verbs, arguments and flags, and what AlexeyAB's fork added for users.

    pydarknet detect CFG WEIGHTS [IMG] [-thresh T] [-save_labels]
    pydarknet detector test DATA CFG WEIGHTS [IMG] [-thresh T] [-hier H] [-out NAME|result.json]
                                                  [-ext_output] [-dont_show] [-save_labels]
    pydarknet detector train DATA CFG [WEIGHTS] [-clear] [-map] [-seed K] [-max_batches N] [-workers N]
                                                  [-sync allreduce|darknet]   (mpiexec -n N ...; -gpus 0,1)
                                                  [-tracker tensorboard|mlflow] [-grad_stats N] [-map_every K]
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
    pydarknet classifier train DATA CFG [WEIGHTS] [-clear] [-seed S] [-tracker tensorboard|mlflow]
    pydarknet classifier valid|predict|label DATA CFG WEIGHTS [IMG] [-t K]   (IMG and -t: predict's)
    pydarknet tune DATA CFG [WEIGHTS] [-space SPACE] [-trials N] [-iterations M] [-sampler tpe|random|grid] ...
                                                  (hyper-parameter search on Optuna: pydarknet tune --help)

Flags anywhere on the line, as Darknet's find_arg reads them: -threads N, -nogpu, -i N, -gpus 0,1. A flag the
command does not read stops it (exit 2, naming the flag it may have meant); AlexeyAB's that pydarknet does not
implement are reported and ignored. `pydarknet CMD [VERB] --help` (-h, -help: where the command reads no -h) lists
a command's flags and their defaults; `pydarknet detector` (classifier, dataset, yolo) lists its verbs.
"""
import os
import sys
import traceback
import warnings

from .. import settings
from ..parallel import comm as parallel
from ..parallel import launch
from ..errors import DarknetError, UsageError
from . import classifier, dataset, detector, export, tune, weights
from .args import (GLOBAL_FLAGS, HELP_WORDS, UNSUPPORTED_FLAGS, Args, UnknownVerb, implemented_flags, unknown_flag_note,
                   unknown_flags)

# The words of every command are read in this package and nowhere else (args.py's Args, a module a verb family).
USAGE = __doc__.split("\n\n", 1)[1]


def set_threads(n):
    """Threads for Numba's kernels and for the GEMMs alike (backend/cpu/threads.py shares single-threaded BLAS calls
    out over as many)."""
    import numba
    from ..backend.cpu import threads
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    threads.limit_blas(again=True)


# each verb family's words are read in a module of its own; each calls one library function with plain values
COMMANDS = {"detector": detector.detector, "detect": detector.detect, "partial": weights.partial,
            "randweights": weights.randweights, "export": export.export, "dataset": dataset.dataset,
            "yolo": detector.yolo, "classifier": classifier.classifier, "tune": tune.tune}


def select_device(nogpu, index, gpus):
    """Darknet's -nogpu, -i N and -gpus 0,1, for the networks this command builds ($PYDARKNET_GPU overrides them).
    As in Darknet, -i and -gpus only matter in a GPU build (`make GPU=1`); one GPU per process: the first of -gpus,
    and under an MPI launcher the one at this rank's local rank (parallel/launch.py)."""
    from .. import backend
    backend.request_device(None)
    if nogpu:
        backend.request_device("cpu")
    elif backend.build_wants_gpu() and (gpus or index is not None):
        listed = launch.gpu_list(gpus)
        if gpus and parallel.launched_size() is not None:
            first = launch.rank_device(listed)
        else:
            first = listed[0] if listed else gpus if gpus else index
        backend.request_device(backend.parse_device(first, "-gpus" if gpus else "-i"))


def starts_ranks(nogpu, gpus, words):
    """Whether this command starts its own ranks (parallel/launch.py): training with -gpus 0,1,... in a GPU build,
    in a process no MPI launcher started, help not asked for."""
    from .. import backend
    return (not nogpu and launch.starts_ranks(words, gpus) and parallel.launched_size() is None
            and not any(word in HELP_WORDS for word in words) and backend.build_wants_gpu())


class _Refuse:
    """An import hook that turns the imports of some modules down (see refuse_unused_imports; args.allow_imports
    lifts it)."""

    refuses_imports = True

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
# one thread, as backend/cpu/threads.py wants it, and threadpoolctl need not find and limit it (0.01-0.02 s).
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def prepare_process():
    """What the command's own process does before it loads numpy and Numba (run() does it; main(), which tests
    and programs call in their own processes, does not): refuse_unused_imports, BLAS on one thread from the start,
    and jit.light_cache_loads."""
    refuse_unused_imports()
    blas_by_environment = "numpy" not in sys.modules and not any(v in os.environ for v in BLAS_THREAD_VARIABLES)
    if blas_by_environment:
        os.environ.update(dict.fromkeys(BLAS_THREAD_VARIABLES, "1"))
    from .. import jit
    from ..backend.cpu import threads as gemm_threads
    jit.light_cache_loads()
    if blas_by_environment:
        gemm_threads.blas_limited_by_environment()


FAMILIES = ("detector", "dataset", "yolo", "classifier")      # the commands whose first word is a verb


def listing(name, command, verb=None):
    """Run the command in listing mode (args.py's Args) on its verb alone, so that it stops at its missing arguments
    having read its flags: (that Args, whose `asked` holds them, and the usage line it stopped at). A family's
    UnknownVerb (no verb, or one it does not know) goes up."""
    probe = Args([verb] if verb is not None and name in FAMILIES else [], listing=True, name=name)
    try:
        command(probe)
    except UnknownVerb:
        raise
    except DarknetError as e:
        return probe, str(e)
    return probe, f"usage: pydarknet {name} ..."


def flags_read_anywhere():
    """Every flag some command reads (each family's verbs listed one by one)."""
    found = set()
    for name, command in COMMANDS.items():
        try:
            probes = [listing(name, command)[0]]
        except UnknownVerb as e:
            probes = [listing(name, command, verb)[0] for verb in e.verbs]
        found.update(flag for probe in probes for flag, _ in probe.asked)
    return found


def command_help(usage, probe, keep=()):
    """`--help`: the command's usage line and every flag it reads, with its default (see Args's listing)."""
    print(usage)
    print("flags (default):")
    for flag, default in probe.asked + list(GLOBAL_FLAGS):
        print(f"  {flag:<18} {default}")
    print("AlexeyAB's flags accepted and ignored (values they take): " +
          ", ".join(f"{flag} {count}" for flag, count in UNSUPPORTED_FLAGS.items() if flag not in keep))
    return 0


def warning_line(message, category):
    """A warning as the command prints it: one line. numpy's arithmetic warnings ("overflow encountered in cast")
    are said in words: they mean numbers beyond float32, which training reaches as its loss diverges."""
    text = str(message)
    if issubclass(category, RuntimeWarning) and " encountered in " in text:
        return (f"Warning: numbers too large for float32, or not numbers at all, in the network's arithmetic "
                f"(numpy: {text}): weights or a loss are overflowing; a training run at this point is diverging")
    return f"Warning: {text}"


def run_command(name, command, args, keep=()):
    """The command on its words: its help where they ask for it (--help; -h and -help where it reads no such flag),
    exit 2 with one line each on the flags it does not read (a value of one it reads and a number pass), else its
    run. A family without a verb lists its verbs (exit 0 where help was asked for)."""
    verb = next((word for word in args.argv if word not in HELP_WORDS), None)
    try:
        probe, usage = listing(name, command, verb)
    except UnknownVerb as e:
        if verb is None and any(word in HELP_WORDS for word in args.argv):
            print(e)
            return 0
        raise
    if probe.asks_help(args.argv):
        return command_help(usage, probe, keep)
    unknown = unknown_flags(args.argv, probe)
    if unknown:
        elsewhere = flags_read_anywhere()
        for word in unknown:
            note = unknown_flag_note(word, probe, f"{name} {verb}" if name in FAMILIES else name, elsewhere)
            print(f"pydarknet: {note}", file=sys.stderr)
        return 2
    return command(args)


class Ending:
    """How main() ended, for run() on several MPI ranks: an error that ended this rank alone aborts the job (its
    peers would wait in a collective forever); a stop every rank agreed on (a finished run, Ctrl-C, a NaN loss)
    finalizes MPI."""
    alone = False


def rank_prefix():
    """"rank R: " in a process that is one of several MPI ranks."""
    world = parallel.started()
    return f"rank {world.rank}: " if world is not None and world.size > 1 else ""


def say_error(text, error=None):
    """The error line, on several ranks with the rank; a stop every rank agreed on is said by rank 0 alone."""
    world = parallel.started()
    agreed = getattr(error, "agreed", False)
    Ending.alone = not agreed
    if agreed and world is not None and world.rank:
        return
    print(f"pydarknet: {rank_prefix()}{text}", file=sys.stderr)


def start_world(nogpu, gpus):
    """Under an MPI launcher, this rank's communicator and its default thread count (the cores shared by the ranks
    on this machine; idle workers do not spin there); else None. In a CPU build -gpus is read and ignored with one
    line, as before."""
    if parallel.launched_size() is None:
        from .. import backend
        if gpus and "," in gpus and not backend.build_wants_gpu():
            print(f"pydarknet: -gpus {gpus}: ignored in a CPU build (one process on the CPU; `mpiexec -n N` runs "
                  f"N processes)", file=sys.stderr)
        return None
    from .. import backend
    device = backend.default_device() if gpus and not nogpu and backend.build_wants_gpu() else "cpu"
    world = parallel.world(gpu=None if device == "cpu" else device)
    launch.check_ranks(world)
    if world.local_size > 1:
        from ..backend.cpu import threads
        threads.set_spin(0)     # an idle worker's spin would take a core another rank is computing on
        os.environ["GOMP_SPINCOUNT"] = "0"      # Numba's threads too (read when they start, after this)
    return max(1, (os.cpu_count() or 1) // world.local_size)


def main(argv=None):
    args = Args(sys.argv[1:] if argv is None else argv)
    warnings.formatwarning = lambda message, category, *rest: warning_line(message, category) + "\n"
    try:
        keep = implemented_flags(args.argv)
        for note in args.drop_unsupported(keep):
            print(f"pydarknet: {note}", file=sys.stderr)
        words = list(args.argv)         # the ranks' command line, where this command starts ranks
        threads = args.value("-threads", settings.threads(), int)
        nogpu, gpus, index = args.flag("-nogpu"), args.value("-gpus", None), args.value("-i", None)
        if starts_ranks(nogpu, gpus, args.argv):
            return launch.launch(words, len(launch.gpu_list(gpus)), gpus=launch.gpu_list(gpus))
        select_device(nogpu, index, gpus)
        threads = threads or start_world(nogpu, gpus)
        if threads:
            set_threads(threads)
        name = args.positional(0)
        command = COMMANDS.get(name)
        if command is None:
            if name in (None, "help") + HELP_WORDS:
                print(USAGE)
                return 0 if name else 2
            raise UsageError(f"unknown command '{name}' (pydarknet -h lists the commands)")
        args.name = args.argv.pop(0)
        args.gpus, args.threads = gpus, threads     # the GPUs and threads `tune` shares out among its trials
        return run_command(name, command, args, keep)
    except UsageError as e:
        say_error(str(e), e)
        return 2
    except DarknetError as e:
        say_error(f"error: {e}", e)
        return 1
    except KeyboardInterrupt as e:      # 130, as a shell reports SIGINT; training says what it saved
        say_error(f"interrupted{f' ({e})' if str(e) else ''}", e)
        return 130
    except BrokenPipeError:     # output piped into `head`: stop quietly, as C programs do
        sys.stdout = open(os.devnull, "w")
        return 141


def run():
    """The `pydarknet` program (and `python -m pydarknet`): prepare_process(), main(), then out of the process as
    soon as its output is flushed. The interpreter's teardown (Numba's and LLVM's) took 0.15-0.4 s of every
    command, and nothing is left to write by then: files are closed and weights renamed into place before main
    returns."""
    prepare_process()
    try:
        code = main()
    except BaseException:       # noqa: BLE001  a bug: its traceback, and on several ranks the job ends with it
        if parallel.started() is None or parallel.started().size == 1:
            raise
        traceback.print_exc()
        print(f"pydarknet: {rank_prefix()}stopped by the error above", file=sys.stderr)
        code, Ending.alone = 1, True
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):       # a reader that went away, or a stream already closed
        pass
    world = parallel.started()
    if world is not None:       # os._exit without MPI_Finalize is an abnormal death to Open MPI
        if Ending.alone and code:
            world.abort(code)
        world.finalize()
    os._exit(code)
