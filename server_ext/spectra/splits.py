"""Splits between neighbouring reflections that vary, for the training copies.

A non-cubic cell's distortion changes within one phase: a tetragonal c/a
falls towards its transition, and the (200)/(002) pair that it splits
moves together while each reflection keeps its shape. A strain varying
along the axis (:func:`.augment.strain_field`) cannot make that change:
smooth over a split pair, it moves both alike, and varying faster it
stretches each peak instead -- a single sharp reflection then looks like
an unresolved pair, which is what tells some classes apart. Here the
peaks that the peak model of a denoised spectrum found (:mod:`.denoise`)
are moved: in each cluster of resolved peaks close together (relative to
position, as a split is), the gaps scale about the cluster's centre by one
random factor per copy, and each moved peak is drawn again at its new
place with its own shape. A split pair narrows or widens, but stays
resolved: a pair merged into one broad peak is what an unsplit reflection
looks like. A single peak, and every peak of a spectrum without a peak
model, stays as it was.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .denoise import SUPPORT_FWHM, pseudo_voigt

__all__ = ["SplitPlan", "split_plan", "split_moves"]

#: peaks closer than this many widths (FWHM) are not resolved: they move as one
RESOLVED_FWHM = 2.0
#: peaks lower than this fraction of the strongest stay where they are (a
#: peak model also follows a broad hump with many weak ones)
MIN_HEIGHT = 0.02


@dataclasses.dataclass
class SplitPlan:
    """The peaks of one spectrum that a split moves: ``centers`` (points),
    ``fwhm`` (points), ``heights``, the profile's Lorentzian fraction
    ``eta``; per peak its ``cluster`` and its ``offset`` from the cluster's
    centre (points); per cluster, the ``least`` factor (-1 to 0) its gaps
    may be scaled by and stay resolved."""

    centers: np.ndarray
    fwhm: np.ndarray
    heights: np.ndarray
    eta: float
    cluster: np.ndarray
    offset: np.ndarray
    least: np.ndarray

    @property
    def n_clusters(self) -> int:
        return len(self.least)


def split_plan(centers, fwhm, heights, eta, pos, max_split) -> SplitPlan:
    """The plan of one spectrum with peaks at ``centers`` (points, sub-point)
    of width ``fwhm`` (points) and ``heights`` (one each), profile ``eta``,
    on the increasing axis ``pos`` (one value per point): resolved peaks
    whose gap is below ``max_split`` of their position (relative, as a
    strain) form a cluster; peaks below ``MIN_HEIGHT`` of the strongest
    are left out."""
    h = np.asarray(heights, np.float64)
    strong = (h > 0) & (h >= MIN_HEIGHT * h.max()) if len(h) else np.zeros(0, bool)
    if strong.sum() < 2:
        return SplitPlan(*(np.empty(0),) * 3, float(eta), np.empty(0, np.intp), np.empty(0),
                         np.empty(0))
    order = np.argsort(np.asarray(centers, np.float64)[strong])
    c, w, h = (np.asarray(a, np.float64)[strong][order] for a in (centers, fwhm, heights))
    # groups: peaks not resolved from their neighbour move together
    group = np.cumsum(np.r_[True, np.diff(c) >= RESOLVED_FWHM * np.maximum(w[1:], w[:-1])]) - 1
    mid = np.bincount(group, c) / np.bincount(group)
    x = np.abs(np.interp(mid, np.arange(len(pos)), pos))
    # clusters, left to right: groups within max_split of the cluster's first
    cluster = np.full(len(mid), -1)
    first, n_clusters = 0, 0
    for g in range(1, len(mid) + 1):
        if g < len(mid) and abs(x[g] - x[first]) < max_split * max(x[first], x[g], 1e-12):
            continue
        if g - first > 1:
            cluster[first:g] = n_clusters
            n_clusters += 1
        first = g
    centre = np.array([mid[cluster == k].mean() for k in range(n_clusters)])
    # a pair stays resolved: no cluster narrows below RESOLVED_FWHM between
    # the peaks on either side of a boundary between its groups
    least = np.full(n_clusters, -1.0)
    for i in np.flatnonzero(np.diff(group)):
        a, b = group[i], group[i + 1]
        if cluster[a] >= 0 and cluster[a] == cluster[b]:
            room = RESOLVED_FWHM * max(w[i], w[i + 1]) - (c[i + 1] - c[i])
            least[cluster[a]] = max(least[cluster[a]], room / (mid[b] - mid[a]))
    moved = cluster[group] >= 0
    k = cluster[group][moved]
    offset = mid[group][moved] - centre[k]
    return SplitPlan(c[moved], w[moved], h[moved], float(eta), k, offset, least)


def split_moves(plans, rows, half_range, n_points, rng) -> np.ndarray:
    """(len(rows), n_points) float32: what to add to source ``rows[i]`` for
    its copy i: every cluster of ``plans[rows[i]]`` scaled about its centre
    by a factor within 1 +- ``half_range[i]``, narrowed no further than
    resolved (each moved peak taken away and drawn at its new place; a plan
    of None: nothing)."""
    out = np.zeros((len(rows), n_points), np.float32)
    for i, r in enumerate(rows):
        plan = plans[r]
        if plan is None or plan.n_clusters == 0 or half_range[i] <= 0:
            continue
        k = rng.uniform(np.maximum(-half_range[i], plan.least), half_range[i])
        to = plan.centers + k[plan.cluster] * plan.offset
        half = int(np.ceil(SUPPORT_FWHM * plan.fwhm.max())) + 1
        j = np.round(plan.centers).astype(np.intp)[:, None] + np.arange(-half, half + 1)
        inside = (j >= 0) & (j < n_points)
        w = plan.fwhm[:, None]
        change = plan.heights[:, None] * (pseudo_voigt((j - to[:, None]) / w, plan.eta)[0]
                                          - pseudo_voigt((j - plan.centers[:, None]) / w,
                                                         plan.eta)[0])
        np.add.at(out[i], j[inside], change[inside])
    return out
