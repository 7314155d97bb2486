"""The figures of the spectra workflow, as plain matplotlib (usable in widgets and batch code)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

MAX_CURVES = 12  # training curves drawn per class, besides its mean


def _summary(model) -> dict:
    """bins / separability / weights of a fitted ``BinnedSpectraClassifier`` or of the API's summary."""
    if isinstance(model, Mapping):
        return {k: model[k] for k in ("bins", "separability", "weights")}
    return {"bins": np.asarray(model.bins_).tolist(), "separability": list(model.separability_),
            "weights": list(model.weights_)}


def separability_figure(model, X=None, y=None, axis=None, fig=None, axis_label=None):
    """Separability and weight of each kept bin over the spectrum, the training curves beneath.

    ``model``: a fitted ``BinnedSpectraClassifier`` or the ``result`` of a
    training job; ``X``/``y``: the labelled training spectra (optional);
    ``axis``: the spectrum's abscissa (default: point index), named
    ``axis_label`` (e.g. ``twoTheta``; default "spectrum axis"); ``fig``:
    draw into this figure (an ipympl one in widgets) instead of a new one.
    """
    if fig is None:
        from matplotlib.figure import Figure
        fig = Figure(figsize=(9, 5.5), layout="constrained")
    fig.clear()
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1.4])
    s = _summary(model)
    n_points = X.shape[1] if X is not None else int(max((b[1] for b in s["bins"]), default=1))
    x = np.arange(n_points, dtype=float) if axis is None else np.asarray(axis, dtype=float)

    def at(i: float) -> float:  # a point index (possibly the stop) on the abscissa
        i = int(min(max(i, 0), n_points - 1))
        return float(x[i])

    sep_ax = top
    w_ax = top.twinx()
    for (start, stop), sep, w in zip(s["bins"], s["separability"], s["weights"]):
        left, right = at(start), at(stop - 1)
        sep_ax.fill_between([left, right], 0, sep, color="tab:blue", alpha=0.35, step="pre")
        w_ax.hlines(w, left, right, color="tab:red", linewidth=2.5)
    sep_ax.set_ylim(0, 1.05)
    sep_ax.set_ylabel("separability\n(held-out accuracy)", color="tab:blue")
    w_ax.set_ylabel("weight in the vote", color="tab:red")
    w_ax.set_ylim(0, max([*s["weights"], 1e-9]) * 1.15)
    sep_ax.set_title(f"{len(s['bins'])} informative bins")

    if X is not None and y is not None:
        y = np.asarray(y)
        colours = {}
        for i, c in enumerate(np.unique(y)):
            rows = np.flatnonzero(y == c)
            colour = colours.setdefault(c, f"C{i}")
            for r in rows[:: max(1, len(rows) // MAX_CURVES)][:MAX_CURVES]:
                bottom.plot(x, X[r], color=colour, alpha=0.15, linewidth=0.6)
            bottom.plot(x, np.nanmean(X[rows], axis=0), color=colour, linewidth=1.6, label=f"{c} ({len(rows)})")
        bottom.legend(loc="upper right", fontsize=8)
    for start, stop in s["bins"]:
        bottom.axvspan(at(start), at(stop - 1), color="0.85", zorder=0)
    bottom.set_ylabel("training spectra")
    bottom.set_xlabel("point" if axis is None else axis_label or "spectrum axis")
    return fig


def stream_figure(fig, trains, fractions: dict, confidence, ambiguous, phases=()):
    """Class fractions and mean confidence per train (the live stream plot), redrawn in *fig*;
    behind the fractions a band per run of trains in ``phases`` (``(first, last, phase)``):
    a class's in its colour, ``mixed`` grey, ``none classified`` none."""
    fig.clear()
    frac_ax, conf_ax = fig.subplots(2, 1, sharex=True)
    colours = {name: f"C{i}" for i, name in enumerate(sorted(fractions))}
    mixed_label = "mixed trains"
    for first, last, phase in phases:
        if phase in colours or phase == "mixed":
            frac_ax.axvspan(first - 0.5, last + 0.5, color=colours.get(phase, "0.6"), alpha=0.15,
                            linewidth=0, label=mixed_label if phase == "mixed" else None)
            mixed_label = None if phase == "mixed" else mixed_label
    for name, values in sorted(fractions.items()):
        frac_ax.plot(trains, values, ".-", color=colours[name], label=name, linewidth=1.2, markersize=3)
    frac_ax.set_ylim(-0.02, 1.02)
    frac_ax.set_ylabel("class fraction")
    if fractions:
        frac_ax.legend(loc="center left", fontsize=8)
    conf_ax.plot(trains, confidence, color="k", linewidth=1, label="mean confidence")
    conf_ax.plot(trains, ambiguous, color="tab:red", linewidth=1, label="ambiguous fraction")
    conf_ax.set_ylim(-0.02, 1.02)
    conf_ax.set_xlabel("train ID")
    plain_integer_ticks(conf_ax.xaxis)
    conf_ax.legend(loc="center left", fontsize=8)
    return fig


def plain_integer_ticks(axis, nbins=6):
    """Whole numbers written out on ``axis``: train IDs read as 1200000100, not as 100
    beside an offset "+1.2e9"."""
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    axis.set_major_locator(MaxNLocator(nbins=nbins, integer=True))
    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    axis.set_major_formatter(formatter)


def prediction_figure(fig, confidence, ambiguous, labels):
    """Confidence per spectrum of a classified file; ambiguous ones marked in red (those not
    classified, label None, left out)."""
    fig.clear()
    ax = fig.subplots()
    conf = np.array([np.nan if c is None else c for c in confidence], dtype=float)
    amb = np.asarray(ambiguous, dtype=bool)
    idx = np.arange(len(conf))
    classes = sorted({c for c in labels if c is not None})  # None: not classified, not drawn
    lab = np.asarray(labels, dtype=object)
    for i, c in enumerate(classes):
        sel = (lab == c) & ~amb
        ax.scatter(idx[sel], conf[sel], s=6, color=f"C{i}", label=c)
    ax.scatter(idx[amb], conf[amb], s=18, marker="x", color="tab:red", label=f"ambiguous ({int(amb.sum())})")
    ax.set_xlabel("spectrum")
    ax.set_ylabel("confidence")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right", fontsize=8)
    return fig
