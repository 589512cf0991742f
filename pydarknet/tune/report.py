"""What a study leaves in its folder: trials.csv, best.cfg, the pictures (history, importances, every trial's
validation loss and mAP by iteration) and the table of the best trials printed at the end."""
import csv
import io
import os
import warnings

from .. import files
from .space import cfg_with_values
from .study import FITNESS, shown_values

BEST_SHOWN = 5
IMPORTANCE_LEAST = 3        # complete trials Optuna's importances need to say something


def write_outputs(study, plan, out):
    """trials.csv, best.cfg and the pictures in the study's folder; the best trials' table on `out`."""
    trials = study.get_trials(deepcopy=False)
    write_csv(os.path.join(plan.folder, "trials.csv"), trials, plan)
    complete = ranked(trials)
    best = complete[0] if complete else None
    if best is not None:
        files.write_text(os.path.join(plan.folder, "best.cfg"),
                         cfg_with_values(plan.cfg_text, best.params, plan.params, plan.sections))
    draw_pictures(study, plan, complete, out)
    print_table(trials, complete, plan, out)
    return best


def ranked(trials):
    """The complete trials, best first: the highest fitness, then the lowest validation loss (short trials often
    tie at mAP 0)."""
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    return sorted(complete, key=lambda t: (-t.value, t.user_attrs.get("validation_loss", float("inf"))))


def rows(trials, plan):
    """trials.csv's header and rows: number, each searched key, fitness (a complete trial's; Optuna gives a pruned
    one its last report), validation loss, mAP@0.5, state, reason, iterations, seconds."""
    names = [p.name for p in plan.params]
    header = ["number", *names, "fitness", "validation_loss", "map50", "state", "reason", "iterations", "seconds"]
    table = []
    for t in trials:
        attrs = t.user_attrs
        table.append([t.number, *[t.params.get(name, "") for name in names],
                      t.value if t.state.name == "COMPLETE" else "", attrs.get("validation_loss", ""),
                      "" if attrs.get("map50") is None else attrs["map50"], t.state.name, attrs.get("reason", ""),
                      attrs.get("iterations", ""), attrs.get("seconds", "")])
    return header, table


def write_csv(path, trials, plan):
    header, table = rows(trials, plan)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(table)
    files.write_text(path, text.getvalue())


def draw_pictures(study, plan, complete, out):
    """history.png and importances.png through optuna.visualization.matplotlib, reports.png of our own."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as plots
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Target and region quantiles")     # few trials, equal values
    pictures = [("history.png", plots.plot_optimization_history)] if complete else []
    if len(complete) >= IMPORTANCE_LEAST and len(plan.params) > 1:
        pictures.append(("importances.png", plots.plot_param_importances))
    else:
        why = "one key is searched" if len(plan.params) < 2 else \
            f"{len(complete)} complete trials (it needs {IMPORTANCE_LEAST})"
        print(f"tune: no importances.png: {why}", file=out)
    for name, plot in pictures:
        axes = plot(study)
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        save(figure, os.path.join(plan.folder, name))
        plt.close(figure)
    draw_reports(study, plan)


def draw_reports(study, plan):
    """reports.png: each trial's validation loss (left) and fitness metric (right) at each report, by iteration at
    the cfg's batch; pruned trials dashed, failed ones dotted."""
    import matplotlib.pyplot as plt
    figure, (loss_axes, map_axes) = plt.subplots(1, 2, figsize=(12, 4.5))
    styles = {"COMPLETE": "-", "PRUNED": "--", "FAIL": ":"}
    for t in study.get_trials(deepcopy=False):
        history = t.user_attrs.get("history")
        if not history:
            continue
        scale = t.params.get("net.batch", plan.batch) / plan.batch
        iterations = [row[0] * scale for row in history]
        style = dict(linestyle=styles.get(t.state.name, "-"), marker="o", ms=3, label=f"trial {t.number}",
                     color=plt.cm.tab20(t.number % 20))
        loss_axes.plot(iterations, [row[1] for row in history], **style)
        map_axes.plot(iterations, [row[2] if row[2] is not None else float("nan") for row in history], **style)
    loss_axes.set(title="validation loss", xlabel=f"iteration (batch {plan.batch})", ylabel="loss per image")
    map_axes.set(title=FITNESS[plan.fitness][1], xlabel=f"iteration (batch {plan.batch})")
    loss_axes.set_yscale("log")
    if map_axes.lines:
        map_axes.legend(fontsize=7, ncol=2)
    figure.suptitle(f"study {plan.name}: complete -, pruned --, failed :")
    figure.tight_layout()
    save(figure, os.path.join(plan.folder, "reports.png"))
    plt.close(figure)


def save(figure, path):
    with files.replacing(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")    # Optuna's long labels kept whole


def print_table(trials, complete, plan, out):
    """The best trials, best first, and how the study's trials ended."""
    states = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    print(f"tune: {len(trials)} trials: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())),
          file=out)
    if not complete:
        print("tune: no complete trial yet: no best.cfg", file=out)
        return
    best = complete[:BEST_SHOWN]
    print(f"the best trials ({FITNESS[plan.fitness][1]} at the last report, then the lowest validation loss):",
          file=out)
    print(f"  {'trial':>5}  {'fitness':>8}  {'val loss':>9}  values", file=out)
    for t in best:
        values = shown_values(t.params)
        loss = t.user_attrs.get("validation_loss")
        print(f"  {t.number:>5}  {t.value:>8.4f}  {loss if loss is None else format(loss, '>9.4f')}  {values}",
              file=out)
    print(f"best.cfg: {os.path.join(plan.folder, 'best.cfg')} (trial {best[0].number}'s values in "
          f"{plan.cfgfile}: train it with `pydarknet detector train DATA {os.path.join(plan.folder, 'best.cfg')}`)"
          .replace("detector", plan.kind), file=out)
