"""Per-spectrum strain estimate and alignment of the segment features.

The training copies get a random strain (±``strain``) so that the bin
networks ignore thermal drift. On segment means that costs the weak peaks:
at high angle a 1.5 % strain moves a peak by several segments, and the
moving flanks of the strong peaks swamp a peak of a few percent (on the
``weak`` powder series a held-out nearest-centroid window told A from A +
superlattice peaks at 0.98 on copies without strain, at most 0.72 with it).
So each spectrum's strain is estimated and undone before the bins see it,
in training and in inference; the networks then learn only what is left.

Estimate: the baseline-free, normalised segment means are correlated with
templates -- each structure's mean labelled spectrum strained over a grid
(the position model of :func:`.augment.strain_shift`, steps that move the
outermost segment by half a segment), turned into segment features the
same way, centred and of unit norm -- on the segments that change most
with strain. The best template's grid value is refined by a parabola
through its neighbours' correlations. Classes of one structure (A and A +
weak peaks) share one set of templates: the alignment must not depend on
which of them a spectrum resembles more (the networks learnt that
instead: `weak` seed 1 lost 8 points under strain).

Alignment: each aligned segment is interpolated linearly between the two
observed segments around where it lies at that strain (rounding to the
nearest segment left a saw-tooth residual of up to half a segment that the
strong peaks' flanks turn into large feature changes: `weak` seed 1 lost
5-9 points under strain with it, 0.35-1.4 with the interpolation).
Inference pays one small product (rows x used segments x templates, one
BLAS call per chunk), then the best template, the parabola and the
interpolation of the kept bins' windows, compiled (numba) into one pass
per row while the row is in cache: as whole-chunk NumPy steps (index
arrays of the chunk's size for the gathers) the estimate and alignment
cost 2.4 of the 6.5 us per spectrum of the slowest model; compiled, that
model's ``predict`` runs x1.3-1.5 faster (spectra README).

Only where movement is nuisance: when two classes differ by position (the
same structure in another cell, see :mod:`.nuisance`), aligning would undo
the very difference that tells them apart. And not where it harms: "auto"
aligns unless the aligned held-out copies tell some class pair apart worse
(:func:`alignment_is_safe`), which catches a difference of position that
the position test missed. It does not wait for the copies to show a gain:
they move only within ``strain``, and the labelled spectra may not show how
far a class drifts (protocol A: two neighbouring curves per class), while
the alignment reaches ``strain`` + 1 % (an independent rock-salt -> CsCl
pressure series, B1 labelled only at 0 GPa and compressed by 4 % in d up to
the transition: 92.4 % unaligned, as "auto" chose when it asked for a gain
of 0.02, 99.6 % aligned).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .augment import increasing_axis, strain_shift
from .compiled import compiled

__all__ = ["StrainAligner", "aligns", "alignment_is_safe", "pair_changes", "class_templates",
           "ClassTemplates"]

#: grid step: the strain that moves the outermost segment centre by this
#: fraction of a segment; the best grid value is refined between its
#: neighbours (a parabola through the three correlations), so a finer step
#: costs templates more than it gains accuracy
STEP_SEGMENTS = 0.5
#: most grid values per side of zero: the estimate's cost stays bounded
#: whatever the segments (240 segments and ±2.5 % on 2-theta 10-90: 14;
#: with 32 segments per bin the steps grow to a segment)
MAX_STEPS = 15
#: a class mean whose best correlation with an earlier class's strained
#: mean reaches this is taken as that structure (in another cell, with
#: weak peaks more or less): it gets no templates of its own
SAME_STRUCTURE = 0.8
#: the strain is read on at most this many segments, those whose template
#: values change most with strain: the product with the templates is the
#: cost of the estimate
USED_SEGMENTS = 96
#: the refinement is rounded to this many parts of a grid step (the
#: interpolation weights are precomputed for each)
SUBSTEPS = 8
#: "auto" does not align where some class pair's held-out accuracy (of the
#: pair's best window, :func:`.separability.pair_separability`) is worse
#: aligned by more than this: aligning erases a difference of peak position
#: (the same structure in another cell) that the position test missed
#: (0.04-0.22 on the ``shift`` series' pair)
LOSS = 0.01


def aligns(align_strain, strain, pairs) -> bool:
    """Whether a model may align: ``align_strain`` True/False, or
    ``"auto"``: when the copies get strain and no class pair (``pairs``, as
    ``position_pairs_``) is separated by position; "auto" then aligns only
    where :func:`alignment_is_safe`."""
    if align_strain == "auto":
        return strain > 0 and not any(p["separated_by"] == "position" for p in pairs)
    return bool(align_strain)


def pair_changes(unaligned, aligned) -> np.ndarray:
    """Per class pair (c < d), how much better the aligned copies separate
    it: ``aligned - unaligned`` of two (classes, classes) held-out
    best-window accuracies (``alignment_evidence_``)."""
    upper = np.triu_indices(len(unaligned), 1)
    return np.asarray(aligned)[upper] - np.asarray(unaligned)[upper]


def alignment_is_safe(unaligned, aligned) -> bool:
    """Whether no class pair is separated worse by more than ``LOSS`` on
    the aligned copies (:func:`pair_changes`)."""
    change = pair_changes(unaligned, aligned)
    return bool(len(change) and change.min() >= -LOSS)


class StrainAligner:
    """Strain estimate and segment interpolation (see module doc).

    ``grid`` (G,): the strains of the templates of each structure;
    ``templates`` (used segments, R * G): centred, unit-norm template
    features of R structures, structure-major; ``positions`` (G,
    segments): per grid strain, the (fractional) observed segment that
    holds what sits at each segment when unstrained; ``used``: the
    segments the estimate reads.
    """

    def __init__(self, grid, templates, positions, used):
        self.grid = np.asarray(grid, np.float64)
        self.templates = np.ascontiguousarray(templates, dtype=np.float32)
        self.positions = np.ascontiguousarray(positions, dtype=np.float32)
        self.used = np.asarray(used, np.intp)
        G = len(self.grid)
        # d(position)/d(grid index): the refinement moves along it
        self.slopes = np.gradient(self.positions, axis=0).astype(np.float32) if G > 1 else \
            np.zeros_like(self.positions)
        self.n_segments = self.positions.shape[1]

    @classmethod
    def fit(cls, prep, X, y, n_classes, axis, max_strain) -> "StrainAligner":
        """Templates from the class means of the labelled spectra ``X``
        (class index ``y``), strains in ``±max_strain`` about the axis origin
        (``axis``: as given to ``fit``, None for the point index)."""
        return cls.from_templates(prep, class_templates(prep, X, y, n_classes, axis, max_strain),
                                  axis)

    @classmethod
    def from_templates(cls, prep, templates: "ClassTemplates", axis) -> "StrainAligner":
        """The aligner of :func:`class_templates`' strained class means.

        Classes of one structure (A and A + weak peaks) share the templates
        of the first of them: the alignment must not depend on which of
        the two a spectrum resembles more, or the networks learn that
        instead of the weak peaks."""
        grid, G = templates.grid, len(templates.grid)
        reference = np.unique(templates.structure)
        T = templates.features[reference]
        used = np.arange(prep.n_segments)
        if USED_SEGMENTS < prep.n_segments:
            change = T.var(axis=1).sum(axis=0)
            used = np.sort(np.argsort(-change)[:USED_SEGMENTS])
        T = _unit(T[:, :, used].reshape(len(reference) * G, -1))
        pos, idx, centers, x = _segment_positions(prep, axis)
        # what sits at x when unstrained is observed at x * (1 + s)
        observed = np.interp(x[None, :] * (1.0 + grid[:, None]), pos, idx)
        positions = np.interp(observed, centers, np.arange(prep.n_segments))
        return cls(grid, T.T, positions, used)

    def _estimate(self, Z, columns=None):
        """Per row: the best template's grid index and the refinement
        (fraction of a grid step, within ±0.5); with ``columns`` (from
        :meth:`columns`), also the row aligned at those columns."""
        Z = np.ascontiguousarray(Z, dtype=np.float32)
        n = len(Z)
        if columns is None:
            left = np.zeros((1, 0), np.intp)
            weight, n_sub = np.zeros((1, 0), np.float32), 1
        else:
            left, weight, n_sub = columns
        g, delta = np.empty(n, np.intp), np.empty(n, np.float32)
        out = np.empty((n, left.shape[1]), np.float32)
        # the correlations: one BLAS product for all rows (compiled loops
        # over the rows ran it 4x slower)
        scores = Z[:, self.used] @ self.templates
        compiled(_best_and_align)(Z, scores, len(self.grid), n_sub, left, weight, g, delta, out)
        return g, delta, out

    def strain(self, Z) -> np.ndarray:
        """Each row's estimated strain."""
        g, delta, _ = self._estimate(Z)
        step = self.grid[1] - self.grid[0] if len(self.grid) > 1 else 0.0
        return self.grid[g] + delta * step

    def columns(self, columns=None):
        """The interpolation plan of these aligned segments (all by
        default; e.g. the kept bins' windows, flattened), for :meth:`align`:
        per grid strain and ``SUBSTEPS``-th of a step towards the next, the
        left observed segment and the weight of the right one."""
        columns = np.arange(self.n_segments) if columns is None else np.asarray(columns, np.intp)
        t = np.arange(-SUBSTEPS // 2, SUBSTEPS // 2 + 1) / SUBSTEPS  # the refinement's values
        where = (self.positions[:, None, columns]
                 + t[None, :, None] * self.slopes[:, None, columns])  # (G, substeps, columns)
        last = self.n_segments - 1
        np.clip(where, 0.0, last, out=where)
        left = np.minimum(np.floor(where), max(last - 1, 0))
        return (np.ascontiguousarray(left.reshape(-1, len(columns)), dtype=np.intp),
                np.ascontiguousarray((where - left).reshape(-1, len(columns)), dtype=np.float32),
                len(t))

    def align(self, Z, columns=None) -> np.ndarray:
        """``Z`` (n, segments) with each row's strain undone: linear
        interpolation between the two observed segments around where each
        aligned one lies (a new float32 array). ``columns``: from
        :meth:`columns`, only those aligned segments."""
        return self._estimate(Z, self.columns() if columns is None else columns)[2]


def _best_and_align(Z, scores, n_grid, n_sub, left, weight, g, delta, out):
    """:meth:`StrainAligner._estimate`, row by row while the row is in
    cache: from the correlations ``scores`` with the templates, the best
    grid index ``g`` (the first best, as ``argmax``) and the parabola's
    refinement ``delta``; then, where ``out`` has columns, the row of
    ``Z`` interpolated at the plan (``left``, ``weight``; ``n_sub``
    refinements per grid step) of that strain. float32 throughout; the
    GIL is released, so the inference threads run it in parallel."""
    n, n_segments = Z.shape
    n_templates = scores.shape[1]
    half, two = np.float32(0.5), np.float32(2.0)
    for r in range(n):
        row, score = Z[r], scores[r]
        best = 0
        for t in range(1, n_templates):
            if score[t] > score[best]:
                best = t
        g[r] = best % n_grid
        d = np.float32(0.0)
        if 0 < g[r] < n_grid - 1:
            lo, mid, hi = score[best - 1], score[best], score[best + 1]
            curve = lo - two * mid + hi
            if curve < 0:
                d = half * (lo - hi) / curve
                if np.isnan(d):
                    d = np.float32(0.0)
                d = min(max(d, -half), half)
        delta[r] = d
        if out.shape[1] == 0:
            continue
        k = g[r] * n_sub + int(np.rint(d * np.float32(n_sub - 1))) + n_sub // 2
        target = out[r]
        for c in range(out.shape[1]):
            j = np.uint64(left[k, c])  # unsigned: numba then skips its wrap-around of negatives
            if n_segments > 1:
                target[c] = row[j] + (row[j + 1] - row[j]) * weight[k, c]
            else:
                target[c] = row[j]


class ClassTemplates(NamedTuple):
    """The class means strained over a grid: ``grid`` (G,) strains;
    ``features`` (classes, G, segments): their segment features, centred
    and of unit norm; ``structure`` (classes,): per class the first class
    of its structure (itself, or an earlier class whose strained mean
    correlates with its own at ``SAME_STRUCTURE`` or more)."""

    grid: np.ndarray
    features: np.ndarray
    structure: np.ndarray


def class_templates(prep, X, y, n_classes, axis, max_strain) -> ClassTemplates:
    """The strained class means of the labelled spectra ``X`` (class index
    ``y``), strains in ``±max_strain`` about the axis origin, in steps that
    move the outermost segment by ``STEP_SEGMENTS``; and which classes are
    one structure (A, A + weak peaks, A in another cell)."""
    pos, _, centers, x = _segment_positions(prep, axis)
    seg = (pos[-1] - pos[0]) / prep.n_segments
    reach = max(abs(x[0]), abs(x[-1]), 1e-12)
    n_steps = int(min(MAX_STEPS, max(1, np.ceil(max_strain * reach / (STEP_SEGMENTS * seg)))))
    grid = np.linspace(-1.0, 1.0, 2 * n_steps + 1) * max_strain
    G = len(grid)
    means = np.stack([np.asarray(X[y == k], np.float64).mean(0) for k in range(n_classes)])
    rows = np.repeat(np.arange(n_classes), G)
    strained = strain_shift(means.astype(np.float32), rows, pos, np.tile(grid, n_classes))
    T = _unit(prep.transform(strained).astype(np.float64)).reshape(n_classes, G, -1)
    structure = np.arange(n_classes)
    reference = [0]
    for k in range(1, n_classes):
        best = (T[reference] @ T[k, n_steps]).max(axis=1)
        if best.max() >= SAME_STRUCTURE:
            structure[k] = reference[int(np.argmax(best))]
        else:
            reference.append(k)
    return ClassTemplates(grid, T, structure)


def _segment_positions(prep, axis):
    """``(pos, idx, centers, x)``: the points' positions and indices, the
    segment centres as point indices and as positions."""
    pos = increasing_axis(axis, prep.n_points)
    idx = np.arange(prep.n_points, dtype=np.float64)
    centers = 0.5 * (prep.edges[:-1] + prep.edges[1:] - 1)
    return pos, idx, centers, np.interp(centers, idx, pos)


def _unit(T):
    """Rows centred, of unit norm."""
    T = T - T.mean(axis=1, keepdims=True)
    return T / np.maximum(np.linalg.norm(T, axis=1, keepdims=True), 1e-12)
