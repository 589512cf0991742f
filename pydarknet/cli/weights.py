"""`pydarknet partial` and `pydarknet randweights`: their words (the bodies are network.py's)."""
from ..errors import UsageError


def partial(args):
    if len(args.argv) < 4:
        raise UsageError("usage: pydarknet partial CFG WEIGHTS OUT N")
    try:
        count = int(args.argv[3])
    except ValueError:
        raise UsageError(f"partial: N must be a layer count, not '{args.argv[3]}'") from None
    from ..network import partial
    return partial(args.argv[0], args.argv[1], args.argv[2], count)


def randweights(args):
    seed = args.value("-seed", 0, int)
    if len(args.argv) < 2:
        raise UsageError("usage: pydarknet randweights CFG OUT [-seed K]")
    from ..network import randweights
    return randweights(args.argv[0], args.argv[1], seed)
