"""`pydarknet tune DATA CFG [WEIGHTS] ...`: its words (tune/ runs the study)."""
from ..errors import UsageError
from .args import allow_imports, check_order, positive, tracker

USAGE = ("usage: pydarknet tune DATA CFG [WEIGHTS] [-space SPACE] [-trials N] [-iterations M] "
         "[-sampler tpe|random|grid] [-pruner median|hyperband|none] [-prune_on loss|map] [-study DIR] "
         "[-storage URL] [-jobs J] [-seed S] [-fitness map50|coco|top1] [-map_every K] [-tracker tensorboard|mlflow]"
         "   (Optuna: pip install \"pydarknet[tune]\"; the README's 'Tuning')")


def tune(args):
    options = dict(space=args.value("-space", None, shown="[net]'s optimiser and colour keys"),
                   trials=args.value("-trials", None, positive, "20 (a grid: its points)"),
                   iterations=args.value("-iterations", None, positive, "500 (max_batches where less)"),
                   sampler=args.value("-sampler", "tpe"), pruner=args.value("-pruner", "median"),
                   prune_on=args.value("-prune_on", "loss"),
                   folder=args.value("-study", None, shown="tune/<cfg name>"),
                   storage=args.value("-storage", None, shown="DIR/study.journal"),
                   jobs=args.value("-jobs", 1, positive), seed=args.value("-seed", 0, int),
                   fitness=args.value("-fitness", None, shown="map50 (a classifier: top1)"),
                   map_every=args.value("-map_every", None, positive, "M/3"),
                   tracker=args.value("-tracker", None, tracker))
    check_order(args.argv, ("data", "cfg", "weights"), USAGE)
    if len(args.argv) < 2:
        raise UsageError(USAGE)
    if options["tracker"]:
        allow_imports()
    from .. import backend
    from ..parallel.launch import gpu_list
    from ..tune import tune
    gpus = getattr(args, "gpus", None)
    options["gpus"] = gpu_list(gpus) if backend.build_wants_gpu() else []
    options["threads"] = getattr(args, "threads", None)
    tune(args.argv[0], args.argv[1], args.positional(2), **options)
    return 0
