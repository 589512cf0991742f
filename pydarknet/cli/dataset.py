"""`pydarknet dataset shapes|shapes-cls|from-voc|from-coco|check`: their words (data/ does the work)."""
import sys
import time

from ..errors import UsageError
from .args import check_order, verb_of

USAGES = {"shapes": "OUTDIR [-n 2000] [-size 160] [-seed 0]   (a small detection dataset, no download)",
          "shapes-cls": "OUTDIR [-n 1000] [-size 64] [-seed 0]   (one shape an image, for classifiers)",
          "from-voc": "VOCDEVKIT OUTDIR [-names FILE] [-difficult]",
          "from-coco": "INSTANCES.json IMAGEDIR OUTDIR [-list train|valid]",
          "check": "DATA [CFG] [-fast]"}
# the generators' usage lines in their error messages: the table's, without its note
SHAPES_USAGE, SHAPES_CLS_USAGE = (f"usage: pydarknet dataset {verb} {USAGES[verb].split('   (')[0]}"
                                  for verb in ("shapes", "shapes-cls"))


def dataset(args):
    return VERBS[verb_of(args, "dataset", USAGES)](args)


def generator_options(args, usage, n, size):
    """OUTDIR and the -n/-size/-seed flags of a shapes generator, anywhere on the line."""
    try:
        n, size, seed = args.value("-n", n, int), args.value("-size", size, int), args.value("-seed", 0, int)
    except UsageError as e:
        raise UsageError(f"{e}; {usage}") from None
    words = args.argv[1:]       # main() refused the flags the generator does not read
    if len(words) != 1:
        raise UsageError(usage)
    return words[0], n, size, seed


def shapes(args):
    """The shapes detection dataset; one line on stdout (a bad OUTDIR or count: one line, exit 2)."""
    outdir, n, size, seed = generator_options(args, SHAPES_USAGE, 2000, 160)
    from ..data import shapes
    made, seconds = generated("shapes", SHAPES_USAGE, shapes.generate, outdir, n, size, seed)
    if made is None:
        return 2
    counts = ", ".join(f"{name} {count}" for name, count in made.counts.items())
    print(f"shapes: {n} images {size}x{size} ({len(made.train)} train, {len(made.valid)} valid), "
          f"{sum(made.counts.values())} objects ({counts}) in {seconds:.1f}s; data file {made.data}")
    return 0


def shapes_cls(args):
    """The shapes classification dataset (one shape an image); one line on stdout."""
    outdir, n, size, seed = generator_options(args, SHAPES_CLS_USAGE, 1000, 64)
    from ..data import shapes_cls
    data, seconds = generated("shapes-cls", SHAPES_CLS_USAGE, shapes_cls.generate, outdir, n, size, seed)
    if data is None:
        return 2
    print(f"shapes-cls: {n} images {size}x{size}, one shape each, in {seconds:.1f}s; data file {data}")
    return 0


def generated(verb, usage, generate, outdir, n, size, seed):
    """(what generate returned, seconds), or (None, None) after the one line that says why it could not."""
    start = time.perf_counter()
    try:
        return generate(outdir, n=n, size=size, seed=seed), time.perf_counter() - start
    except (ValueError, OSError) as e:
        print(f"pydarknet dataset {verb}: {e}; {usage}", file=sys.stderr)
        return None, None


def from_voc(args):
    names = args.value("-names", None)
    difficult = args.flag("-difficult")
    if len(args.argv) != 3:
        raise UsageError(f"usage: pydarknet dataset from-voc {USAGES['from-voc']}")
    from ..data.voc import from_voc
    from_voc(args.argv[1], args.argv[2], names, difficult)
    return 0


def from_coco(args):
    which = args.value("-list", "train")
    if len(args.argv) != 4 or which not in ("train", "valid"):
        raise UsageError(f"usage: pydarknet dataset from-coco {USAGES['from-coco']}")
    from ..data.coco import from_coco
    from_coco(args.argv[1], args.argv[2], args.argv[3], which)
    return 0


def check(args):
    fast = args.flag("-fast")
    usage = f"usage: pydarknet dataset check {USAGES['check']}"
    check_order(args.argv[1:], ("data", "cfg"), usage)
    if len(args.argv) not in (2, 3):
        raise UsageError(usage)
    from ..data.check import check_lists, summary
    problems = check_lists(args.argv[1], args.positional(2), fast)
    print(summary(problems, fast))
    return 1 if problems else 0


VERBS = {"shapes": shapes, "shapes-cls": shapes_cls, "from-voc": from_voc, "from-coco": from_coco, "check": check}
