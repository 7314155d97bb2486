"""Hot and dead pixels, found in the labelled spectra.

A detector pixel that reads high (hot) or low (dead) in every spectrum
stays where it is while the sample's peaks move: to the position test
(:mod:`.nuisance`) it is a feature that does not move, like a peak of the
sample environment, and moving one class profile onto another leaves it
twice. A peak of the environment must be declared (``fixed_ranges``); a
pixel can be found, because it is narrower than the instrument draws the
sample's peaks. In the median spectrum of every class, a run of one or
two points that stands out of both neighbours

- by :data:`SIGMAS` times the noise there, and
- with :data:`SHARPNESS` (a pair of points: :data:`SHARPNESS_PAIR`) times
  the curvature two points out: a Gaussian peak of sigma 0.5 points
  scores 13 alone and 54 centred on a pair, of sigma 0.85 points (a FWHM
  of 2) 2.6 and 3.4; a pixel on a peak's flank keeps the peak's
  curvature beside it and its own far above,

is such a pixel -- where the instrument draws peaks :data:`RESOLVED`
points wide (FWHM) or more: the peak shape that :mod:`.denoise` measures
on the strongest isolated peaks of the labelled spectra, the pixels
bridged over. In spectra sampled more coarsely a sample's peak can be as
narrow as a pixel, and nothing is found there (nor where no shape can be
measured).

The classifier bridges the pixels found in every spectrum, labelled or
classified (:mod:`.preprocess`): read as they are, a noisy pixel's
counting noise in two curves per class can pass for a class difference.
It also leaves them out of the position test.
"""

from __future__ import annotations

import numpy as np

from .augment import noise_gain

__all__ = ["bad_pixels"]

#: a pixel stands out of its neighbours by this many standard deviations ...
SIGMAS = 8.0
#: ... with this many times the curvature two points out (one point) ...
SHARPNESS = 8.0
#: ... or this many (two neighbouring points)
SHARPNESS_PAIR = 16.0
#: and the instrument's peaks there are this many points wide (FWHM) or more
RESOLVED = 2.0
_NOISE_POINTS = 51  # the running window of the noise estimate


def bad_pixels(X, y_idx, n_classes) -> np.ndarray:
    """Boolean mask of the points of a hot or dead pixel (see the module
    doc) in the labelled spectra ``X`` of classes ``y_idx``."""
    X = np.asarray(X, np.float64)
    if X.shape[1] < 8:  # a run is judged on three points each side
        return np.zeros(X.shape[1], bool)
    gain = float(np.median(np.maximum(noise_gain(X), 0.0)))
    found = np.ones(X.shape[1], bool)
    for c in range(n_classes):
        members = X[y_idx == c]
        median = np.median(members, axis=0)
        sigma = _noise(median, gain, len(members))
        found &= _narrow_runs(median, sigma, 1, SHARPNESS) | _narrow_runs(median, sigma, 2,
                                                                          SHARPNESS_PAIR)
    return found & _resolved(X, found) if found.any() else found


def _noise(m, gain, n):
    """Per point, the standard deviation of the median spectrum ``m``: what
    its second differences spread by around the point, or the counting
    noise of ``n`` spectra where that is more (the top of a hot pixel)."""
    from scipy.ndimage import median_filter

    d2 = np.abs(m[:-2] - 2.0 * m[1:-1] + m[2:])
    # median |N(0, s)| = 0.6745 s, and a second difference has 6 times the variance
    spread = median_filter(d2, _NOISE_POINTS, mode="nearest") / (0.6745 * np.sqrt(6.0))
    spread = np.concatenate([spread[:1], spread, spread[-1:]])
    return np.sqrt(np.maximum(spread * spread, gain * np.maximum(m, 0.0) / n))


def _narrow_runs(m, sigma, width, sharpness):
    """Points of the runs of ``width`` points above (or below) both
    neighbours by ``SIGMAS`` times the noise, with a curvature
    ``sharpness`` times that two points out."""
    p = len(m)
    d2 = np.zeros(p)
    d2[1:-1] = m[:-2] - 2.0 * m[1:-1] + m[2:]
    i = np.arange(3, p - width - 2)
    excess = np.stack([m[i + j] for j in range(width)]) - 0.5 * (m[i - 1] + m[i + width])
    noise = np.sqrt(sigma[i] ** 2 + 0.25 * (sigma[i - 1] ** 2 + sigma[i + width] ** 2))
    # every point of the run, on one side: a hot pixel and its neighbour are no pair
    stands_out = ((np.sign(excess) == np.sign(excess[0])).all(0)
                  & (np.abs(excess).min(0) > SIGMAS * noise))
    inner = np.abs(np.stack([d2[i + j] for j in range(width)]).mean(0))
    outer = np.maximum(np.abs(d2[i - 2]), np.abs(d2[i + width + 1]))
    start = i[stands_out & (inner > sharpness * outer)]
    hit = np.zeros(p, bool)
    for j in range(width):
        hit[start + j] = True
    return hit


def _resolved(X, found):
    """Per point, whether the instrument draws peaks there :data:`RESOLVED`
    points wide or more, measured with the ``found`` points bridged over
    in every spectrum; nowhere where no peak shape can be measured."""
    from .denoise import peak_shape

    from .preprocess import bridge_points

    shape = peak_shape(bridge_points(X, np.flatnonzero(found)))
    if shape is None:
        return np.zeros(X.shape[1], bool)
    return shape.fwhm(np.arange(X.shape[1])) >= RESOLVED
