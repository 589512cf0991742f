"""`pydarknet partial` and `pydarknet randweights`: their words (the bodies are network.py's)."""
from ..errors import UsageError
from .args import check_order


def partial(args):
    usage = "usage: pydarknet partial CFG WEIGHTS OUT N"
    check_order(args.argv, ("cfg", "weights"), usage)
    if len(args.argv) < 4:
        raise UsageError(usage)
    try:
        count = int(args.argv[3])
    except ValueError:
        raise UsageError(f"partial: N must be a layer count, not '{args.argv[3]}'") from None
    from ..network import partial
    return partial(args.argv[0], args.argv[1], args.argv[2], count)


def randweights(args):
    seed = args.value("-seed", 0, int)
    usage = "usage: pydarknet randweights CFG OUT [-seed K]"
    check_order(args.argv, ("cfg",), usage)
    if len(args.argv) < 2:
        raise UsageError(usage)
    from ..network import randweights
    return randweights(args.argv[0], args.argv[1], seed)
