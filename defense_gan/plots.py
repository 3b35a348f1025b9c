"""Robust-accuracy curves (accuracy vs eps) as PNG, drawn with matplotlib.

matplotlib earns its place here: a curve needs axes, ticks, a legend and interval bands,
which a hand-rolled numpy raster (summaries.write_png draws image grids only) would draw
worse. It is imported by this module only, and this module only by what draws curves
(whitebox --sweep_eps, scripts/make_results.py); it imports no TensorFlow.
"""

import io

import matplotlib

from defense_gan.files import write_bytes_atomic


def curve_label(flags: dict) -> str:
    """A legend label for a run's settings (Config fields as a dict): defense and gradient."""
    if flags["defense"] == "none":
        return "no defense"
    if flags["defense"] == "adv_tr":  # A-D ship trained at two eps: the label says which
        return f"adversarial training (eps {flags['adv_train_eps']:g})"
    label = f"Defense-GAN, {flags['gradient']}"
    if flags.get("eot_samples"):
        label += f" + EOT {flags['eot_samples']}"
    return label


def plot_curves(path: str, sweeps, title: str) -> None:
    """Accuracy vs eps, one line per sweep (each {"label", "norm", "points": [{"eps",
    "adversarial_accuracy", "adversarial_accuracy_ci95"}, ...]}), with the 95% Wilson
    intervals as bands; written atomically as PNG. matplotlib (Agg) draws it: axes, legend and
    bands are what a reader needs, and it is imported only here."""
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for sweep in sweeps:
        pts = sorted(sweep["points"], key=lambda p: p["eps"])
        eps = [p["eps"] for p in pts]
        acc = [p["adversarial_accuracy"] for p in pts]
        line, = ax.plot(eps, acc, marker="o", label=f"{sweep['label']} (n={pts[0]['num_images']})")
        ci = [p.get("adversarial_accuracy_ci95") for p in pts]
        if all(ci):
            ax.fill_between(eps, [c[0] for c in ci], [c[1] for c in ci], alpha=0.2,
                            color=line.get_color())
    norms = {sweep["norm"] for sweep in sweeps}
    ax.set_xlabel("eps (" + "/".join(sorted(norms)) + ", pixels in [0, 1])")
    ax.set_ylabel("accuracy (95% Wilson band)")
    ax.set_ylim(0.0, 1.0)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
