"""The outputs of an evaluation: the JSON report, the table and the curve plots."""

import pathlib

import numpy as np

from keras_defusion.evaluation.scoring import resolve_gt_dir
from keras_defusion.io import files

PR_PLOT_NAME = "pr_curves.png"
F_PLOT_NAME = "f_measure_curves.png"


def build_report(results, gt_dir, extra=None):
    """The JSON document of one run.

    Layout: {"tool", "version", "ground_truth", "methods": {name: {"source",
    "images", "mae", "max_f", "max_f_threshold", "f_at_0.5", "adaptive_f",
    "iou_at_0.5", "curves": {"thresholds", "precision", "recall",
    "f_measure"}, "protocol": {...}, "per_image": {stem: {...}}}}}.
    """
    from keras_defusion.version import __version__

    report = {
        "tool": "keras-defusion evaluate",
        "version": __version__,
        "ground_truth": str(resolve_gt_dir(gt_dir)),
    }
    report.update(extra or {})
    report["methods"] = results
    return report


def write_report(path, report):
    """Writes a report (`build_report`) as JSON, atomically; NaN is refused."""
    files.write_json(path, report, indent=1, allow_nan=False)


def plot_curves(results, plots_dir, title=None):
    """PNG plots of the PR and F-measure curves, all methods on each figure.

    Args:
        results: dict method name -> scores (from an evaluate function).
        plots_dir: output folder (created).
        title: optional figure title suffix (e.g. the dataset).

    Returns:
        (pr_path, f_path).
    """
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state.

    plots_dir = pathlib.Path(plots_dir)
    pr_path = plots_dir / PR_PLOT_NAME
    f_path = plots_dir / F_PLOT_NAME
    small_legend = len(results) > 8
    for path, kind in ((pr_path, "pr"), (f_path, "f")):
        figure = Figure(figsize=(6.4, 5.2), dpi=120)
        axes = figure.add_subplot()
        for name, entry in results.items():
            curves = entry["curves"]
            if kind == "pr":
                label = f"{name} (max-F {entry['max_f']:.3f})"
                axes.plot(curves["recall"], curves["precision"], label=label, linewidth=1.4)
            else:
                label = f"{name} (max-F {entry['max_f']:.3f})"
                axes.plot(np.arange(len(curves["f_measure"])), curves["f_measure"],
                          label=label, linewidth=1.4)
        if kind == "pr":
            axes.set_xlabel("recall")
            axes.set_ylabel("precision")
            axes.set_xlim(0, 1)
            heading = "Precision-recall (blur = positive)"
        else:
            axes.set_xlabel("threshold (x 1/255)")
            axes.set_ylabel("F-measure (beta^2 = 0.3)")
            axes.set_xlim(0, 255)
            heading = "F-measure over thresholds"
        axes.set_ylim(0, 1.02)
        axes.grid(True, alpha=0.3)
        axes.set_title(f"{heading}{' - ' + title if title else ''}", fontsize=10)
        axes.legend(fontsize=6 if small_legend else 8, loc="lower left",
                    ncol=2 if small_legend else 1)
        figure.tight_layout()
        files.atomic_write(path, lambda tmp, fig=figure: fig.savefig(tmp, format="png"))
    return pr_path, f_path


def format_table(results):
    """A plain-text table of the headline numbers, one line per method."""
    width = max([len("method")] + [len(name) for name in results])
    lines = [
        f"{'method':<{width}}  images  max-F (thr)     F@0.5   adaptF  MAE     IoU@0.5"
    ]
    for name, entry in results.items():
        lines.append(
            f"{name:<{width}}  {entry['images']:>6}  {entry['max_f']:.4f} ({entry['max_f_threshold']:.3f})"
            f"  {entry['f_at_0.5']:.4f}  {entry['adaptive_f']:.4f}  {entry['mae']:.4f}"
            f"  {entry['iou_at_0.5']:.4f}"
        )
    return "\n".join(lines)
