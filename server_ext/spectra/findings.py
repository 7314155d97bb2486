"""What ``fit`` found besides the bins, in words for a scientist, and where
the bins lie on the spectra's axis: printed by ``daas spectra train``, shown
by the server extension's model summary and the spectra app."""

from __future__ import annotations

import math

from .align import pair_changes
from .inputs import point_runs

__all__ = ["findings", "model_summary", "bins_on_axis", "axis_span"]


def model_summary(clf, retrain: str = "train again with learn_position=False",
                  give_axis: str = "fit with axis=") -> dict:
    """A fitted classifier as JSON types: its classes, points, bins with their
    held-out accuracy and weight, and :func:`findings` (in the caller's words)."""
    return {
        "classes": [str(c) for c in clf.classes_],
        "n_points": int(clf.n_features_in_),
        "bins": [[float(a), float(b)] for a, b in clf.bins_],
        "separability": [float(v) for v in clf.separability_],
        "weights": [float(v) for v in clf.weights_],
        "bins_on_axis": bins_on_axis(clf),
        "findings": list(findings(clf, retrain=retrain, give_axis=give_axis)),
    }


def bins_on_axis(clf) -> list[list[float]] | None:
    """Each bin's first and last point on the model's axis (2-theta, q, d), which
    tells a scientist which reflections a bin holds; None for a model without one."""
    axis = getattr(clf, "axis_", None)
    if axis is None:
        return None
    last = len(axis) - 1
    return [[float(axis[int(a)]), float(axis[min(int(b) - 1, last)])] for a, b in clf.bins_]


def axis_span(span) -> str:
    """A bin's span on the axis as text, both ends to the same decimals, three
    digits of its width: ``27.20-32.91`` (2-theta), ``1.234-1.334`` (q),
    ``-3.00 to 4.00``."""
    lo, hi = span
    width = abs(hi - lo)
    decimals = 2 - math.floor(math.log10(width)) if width > 0 else 3
    decimals = min(max(decimals, 0), 6)
    between = " to " if min(lo, hi) < 0 else "-"  # "-3.00-4.00" would read wrongly
    return f"{lo:.{decimals}f}{between}{hi:.{decimals}f}"


def findings(clf, retrain: str = "train again with learn_position=False",
             give_axis: str = "fit with axis="):
    """What fit found besides the bins, as lines for a scientist: which
    classes differ by peak position, the hot or dead pixels and the spikes
    found, the masked points, a noise offset, a missing axis, and whether
    strain is undone and why. ``retrain``: how to train without a position
    difference, ``give_axis``: how to train with the spectra's axis, in the
    caller's words (options of ``daas spectra train``, parameters)."""
    names = clf.classes_
    pairs = [f"{names[c]}/{names[d]}" for c, d in
             (p["classes"] for p in clf.position_pairs_ or [] if p["separated_by"] == "position")]
    yield f"classes told apart by peak position: {', '.join(pairs) or 'none'}"
    if pairs:
        # from a few curves per class, thermal drift along the series can pass
        # for a cell change (README: "Measured, not adopted")
        yield ("  (if those classes share their cell, the drift between their labelled curves "
               f"passed for a difference: {retrain})")
    if clf.bad_pixels_ is not None and len(clf.bad_pixels_):
        yield (f"hot or dead pixels found (bridged over in every spectrum): "
               f"points {', '.join(map(str, clf.bad_pixels_))}")
    if clf.masked_points_ is not None and len(clf.masked_points_):
        # mask_points adds to them: which were masked at fitting is not kept apart
        yield (f"masked points, NaN or inf in every labelled spectrum or masked since fitting "
               f"(bridged over in every spectrum): {point_runs(clf.masked_points_)}")
    if clf.spikes_:
        yield (f"spikes in single labelled spectra (cosmic rays, readout glitches) bridged "
               f"over before training: {clf.spikes_} points")
    if clf.noise_offset_:
        yield (f"noise above counting noise at low levels (a background or pedestal "
               f"subtracted?): the copies' noise is that of the level plus "
               f"{clf.noise_offset_:.4g} counts")
    if clf.axis_ is None:
        # strain scales positions about 0: about point 0 instead, a run
        # trained without its 2-theta lost up to 24 points under strain
        # (README: "The axis")
        yield ("no axis: peak positions are point indices, so strain is modelled about "
               "point 0 -- right only for an axis that starts near 0; to train with the "
               f"spectra's axis, {give_axis}")
    state = "on" if clf.strain_aligned_ else "off"
    if clf.alignment_evidence_ is None:
        yield f"strain alignment: {state}"
        return
    change = pair_changes(*clf.alignment_evidence_)
    low, high = f"{change.min():+.3f}", f"{change.max():+.3f}"
    pairs = "pair's" if len(change) == 1 else "pairs'"
    by = low if low == high else f"{low} to {high}"
    yield (f"strain alignment: {state} (weighed on held-out copies: aligning changes the class "
           f"{pairs} separability by {by})")
