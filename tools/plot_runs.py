#!/usr/bin/env python
"""Several main-job runs in one figure and one table: learning curves of runs that differ in one
setting (precision, seed, schedule), read from the ``run.json`` files ``tools/main_job.py`` writes.

    python tools/plot_runs.py --output curves.png \\
        "fp32, seed 0=output/fp32_s0/blendmask/run.json" "fp32, seed 1=output/fp32_s1/blendmask/run.json" \\
        "bf16, seed 0=output/bf16_s0/blendmask/run.json" "bf16, seed 1=output/bf16_s1/blendmask/run.json"

Each argument is ``LABEL=PATH``. The text of a label before its first comma names its group
(``fp32``, ``bf16``): a group's runs share a colour, and the second table gives each group's
mean and range of the final AP, so a difference between groups can be read against the spread
inside them (the seeds). The figure has segm AP (solid) and bbox AP (dashed) against iterations
(left) and against training minutes (right; evaluations not counted).
"""

import argparse
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METRICS = ("bbox AP", "segm AP", "segm AP50")


def parse_run(argument: str):
    """``"LABEL=PATH"`` -> (label, group, run dict); a clear error for a bad argument or file."""
    label, sep, path = argument.partition("=")
    if not sep or not label or not path:
        raise ValueError(f"expected LABEL=PATH, got {argument!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{label}: no run file {path}")
    run = json.loads(path.read_text())
    if "error" in run:
        raise ValueError(f"{label}: the run failed: {run['error']}")
    if not run.get("curve"):
        raise ValueError(f"{label}: {path} has no learning curve")
    return label, label.split(",")[0].strip(), run


def runs_table(runs) -> str:
    head = ["run", "iterations", "s/iter", "train min", *METRICS]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for label, _, run in runs:
        cells = [f"{run['iterations']:.0f}", f"{run['s/iter']:.3f}", f"{run['train min']:.1f}"]
        cells += ["nan" if run.get(m) is None else f"{run[m]:.2f}" for m in METRICS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def groups_table(runs) -> str:
    """Per group: number of runs, then mean (min-max) of each final metric."""
    groups = {}
    for _, group, run in runs:
        groups.setdefault(group, []).append(run)
    lines = ["| group | runs | " + " | ".join(f"{m} mean (min-max)" for m in METRICS) + " |",
             "|---|---:|" + "---:|" * len(METRICS)]
    for group, members in groups.items():
        cells = []
        for metric in METRICS:
            values = [r[metric] for r in members if r.get(metric) is not None]
            cells.append(f"{statistics.fmean(values):.2f} ({min(values):.2f}-{max(values):.2f})" if values else "nan")
        lines.append(f"| {group} | {len(members)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs, path: Path, title: str):
    colours = {}
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for label, group, run in runs:
        colour = colours.setdefault(group, f"C{len(colours)}")
        members = [r for r in runs if r[1] == group]
        marker = "os^dv"[[r[0] for r in members].index(label) % 5]
        for ax, x_key in zip(axes, ("iteration", "minutes")):
            xs = [row[x_key] for row in run["curve"]]
            for metric, style in (("segm AP", "-"), ("bbox AP", "--")):
                ys = [float("nan") if row.get(metric) is None else row[metric] for row in run["curve"]]
                ax.plot(xs, ys, style, marker=marker, color=colour, markersize=4,
                        label=f"{label} {metric}", alpha=0.9)
    axes[0].set_xlabel("iteration")
    axes[1].set_xlabel("training minutes (evaluations not counted)")
    for ax in axes:
        ax.set_ylabel("COCO AP (%) on shapes_val")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(title + "\n(last point of each line on every val image, the others on the curve's subset)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="LABEL=PATH", help="a run.json of tools/main_job.py")
    parser.add_argument("--output", default="runs.png", help="the figure (png)")
    parser.add_argument("--title", default="shapes_val: learning curves")
    args = parser.parse_args(argv)
    try:
        runs = [parse_run(a) for a in args.runs]
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    plot(runs, Path(args.output), args.title)
    print(runs_table(runs))
    print()
    print(groups_table(runs))
    print(f"\nFigure: {args.output}")


if __name__ == "__main__":
    main()
