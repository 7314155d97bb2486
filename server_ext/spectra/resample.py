"""Spectra measured on another axis, brought onto a model's.

A model reads its spectra at the positions of the axis it was fitted on
(2-theta, q or d-spacing). Spectra integrated onto another grid -- more or
fewer points, another range, or, on q, another wavelength -- are
linearly interpolated at those positions: per point, its two
neighbours on the other axis and their weights, found once per axis
pair, then one weighted sum per point and spectrum. Positions the other
axis does not cover cannot be read and are refused; a point NaN on the
other axis makes NaN the model's positions beside it (refused, or
bridged where the model bridges them).
"""

from __future__ import annotations

import numpy as np

from .augment import increasing_axis
from .compiled import compiled
from .errors import SpectraError

__all__ = ["ResamplePlan"]


class ResamplePlan:
    """Linear interpolation from positions ``source`` (the spectra's axis)
    at positions ``target`` (the model's); both strictly monotonic, in the
    same units and direction."""

    def __init__(self, source, target):
        source = np.asarray(source, np.float64)
        target = np.asarray(target, np.float64)
        src = increasing_axis(source, source.size)
        tgt = increasing_axis(target, target.size)
        if (source[-1] > source[0]) != (target[-1] > target[0]):
            raise SpectraError("the spectra's axis runs the other way from the model's: give "
                               "positions in the model's units (2-theta, q or d-spacing)")
        # the model's outermost positions may lie a hair outside the other
        # grid's after a unit conversion: a millionth of its span is kept
        slack = 1e-6 * (src[-1] - src[0])
        outside = (tgt < src[0] - slack) | (tgt > src[-1] + slack)
        if outside.any():
            lo, hi = sorted((source[0], source[-1]))
            tlo, thi = sorted((target[0], target[-1]))
            raise SpectraError(f"the spectra's axis runs from {lo:.6g} to {hi:.6g}; the model "
                               f"reads {tlo:.6g} to {thi:.6g} ({int(outside.sum())} of its "
                               f"{target.size} points outside): spectra must cover the "
                               "model's axis")
        tgt = np.clip(tgt, src[0], src[-1])
        right = np.clip(np.searchsorted(src, tgt, side="right"), 1, src.size - 1)
        self.left = (right - 1).astype(np.intp)  # the right neighbour is the next point
        self.weight = ((tgt - src[right - 1]) / (src[right] - src[right - 1])).astype(np.float32)

    def __call__(self, X) -> np.ndarray:
        """``X`` (n, source points) at the target positions, float32, in
        one compiled pass per row (NumPy's gathers of the two neighbours
        ran at a fifth of the classification's speed)."""
        X = np.asarray(X)
        if X.dtype != np.float32 and X.dtype != np.float64:
            X = X.astype(np.float32)
        out = np.empty((len(X), len(self.left)), np.float32)
        compiled(_interpolate, reorder=True)(X, self.left, self.weight, out)
        return out


def _interpolate(X, left, weight, out):
    """``out[i, j] = X[i, left[j]] + (X[i, left[j] + 1] - X[i, left[j]]) * weight[j]``."""
    for i in range(X.shape[0]):
        row = X[i]
        dst = out[i]
        for j in range(left.size):
            a = row[left[j]]
            dst[j] = a + (row[left[j] + 1] - a) * weight[j]
