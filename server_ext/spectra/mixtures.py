"""Labelled spectra that are mixtures of two classes, and their training targets.

Near a phase transition the phases coexist, and a labelled curve there is
a mixture: a curve labelled B may hold 45 % of A (the label names the
majority). Trained with a hard label -- it and its dozens of perturbed
copies all saying "B" -- it teaches every bin that such mixtures are B,
and the test spectra just before it, 60 % A, are called B with confidence.
Mixup teaches the networks that mixtures lie in between; a hard-labelled
mixture contradicts it exactly where the decision is made.

So each labelled spectrum is explained as a non-negative combination of
its nearest other members of its own class (which covers its drift along
the series: thermal expansion, beam) and, in turn, of each other class's
nearest members. The other class's share of that combination is its
estimated fraction, believed in proportion to how much of what the own
class leaves unexplained the mixture explains: a pure spectrum at the end
of a drift is explained by its own neighbours, a coexistence spectrum only
by both classes. The spectrum then trains with the estimated fractions as
its target, the label's class keeping at least half (the label says it is
the majority).
"""

from __future__ import annotations

import numpy as np

__all__ = ["mixture_targets"]

#: nearest members per class that a labelled spectrum is explained by
NEIGHBOURS = 2
#: a smaller share of another class is left out: what drift and noise give
#: pure spectra (at most 0.01 on the extreme curves of the powder series,
#: 0.03 along their drift) -- it would only blur the targets
MIN_SHARE = 0.05


def _nnls_fit(gram, i, basis):
    """Non-negative weights of the profiles ``basis`` fitting profile ``i``,
    and the residual energy, from the Gram matrix of the profiles (a fit
    of a few columns costs microseconds, whatever the number of points)."""
    from scipy.linalg import cholesky, solve_triangular
    from scipy.optimize import nnls

    G = gram[np.ix_(basis, basis)]
    G = G + np.eye(len(basis)) * (1e-12 * np.trace(G) / len(basis) + 1e-300)
    L = cholesky(G, lower=True)
    z = solve_triangular(L, gram[basis, i], lower=True)
    w, r = nnls(L.T, z)
    return w, max(gram[i, i] - z @ z + r * r, 0.0)


def mixture_targets(profiles: np.ndarray, y_idx: np.ndarray, n_classes: int) -> np.ndarray:
    """Training targets (n, n_classes) of labelled spectra: one-hot, or the
    estimated fractions for a mixture of two classes (see the module doc).

    ``profiles``: baseline-free profiles of the labelled spectra, not
    normalised (as from :func:`.nuisance.profiles` with ``unit_sum=False``:
    the weight of a neighbour is then how much of its phases the spectrum
    holds, so fractions are of phase, not of scattered intensity -- phases
    scatter unequally); ``y_idx``: class index of each.
    """
    n = len(profiles)
    targets = np.eye(n_classes)[y_idx]
    gram = profiles @ profiles.T
    norm = np.sqrt(np.maximum(np.diag(gram), 1e-300))
    cosine = gram / norm[:, None] / norm[None, :]
    np.fill_diagonal(cosine, -np.inf)
    members = [np.flatnonzero(y_idx == c) for c in range(n_classes)]
    for i in range(n):
        c = y_idx[i]
        # its own class's closest in shape (whatever the intensity): the
        # members next to it along a drift
        own = members[c][np.argsort(-cosine[i, members[c]], kind="stable")[:NEIGHBOURS]]
        own = own[own != i]
        if not len(own):  # a class of one spectrum: nothing to compare with
            continue
        w, r_own = _nnls_fit(gram, i, own)
        if r_own <= 0.0:
            continue
        best = (r_own, 0.0, c)
        for d in range(n_classes):
            if d == c or not len(members[d]):
                continue
            # the other class's members that best explain what is left
            m = members[d]
            gain = np.maximum((gram[m, i] - gram[np.ix_(m, own)] @ w) / norm[m], 0.0)
            other = m[np.argsort(-gain, kind="stable")[:NEIGHBOURS]]
            w_mix, r_mix = _nnls_fit(gram, i, np.concatenate([own, other]))
            if r_mix < best[0] and w_mix.sum() > 0:
                best = (r_mix, w_mix[len(own):].sum() / w_mix.sum(), d)
        r_mix, fraction, d = best
        # believed as far as the mixture explains what the own class leaves
        share = min(fraction * (1.0 - r_mix / r_own), 0.5)
        if d != c and share >= MIN_SHARE:
            targets[i, c], targets[i, d] = 1.0 - share, share
    return targets
