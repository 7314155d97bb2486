"""Hot and dead pixels, and spikes of single spectra, found in the
labelled spectra.

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

A spike -- a cosmic ray, a readout glitch -- is such a run in one
spectrum only (:func:`spikes`), judged against another spectrum of its
class; the classifier bridges it in that labelled spectrum.
"""

from __future__ import annotations

import numpy as np

from .augment import noise_gain
from .preprocess import bridge_points

__all__ = ["bad_pixels", "spikes", "bridge_spikes"]

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
        sigma = _noise(median, gain * np.maximum(median, 0.0) / len(members))
        found &= _narrow_runs(median, sigma, 1, SHARPNESS) | _narrow_runs(median, sigma, 2,
                                                                          SHARPNESS_PAIR)
    return found & _resolved(X, found) if found.any() else found


def spikes(X, y_idx, n_classes) -> np.ndarray:
    """Boolean mask (spectra, points) of the spikes of single labelled
    spectra ``X`` of classes ``y_idx`` -- a cosmic ray, a readout glitch:
    narrow runs (see the module doc) by which a spectrum stands above the
    most alike other spectrum of its class, scaled to it. Judged on one
    spectrum alone, the top of a peak drawn with Lorentzian wings is as
    sharp as a pixel in its counting noise (4 such tops in the physics
    series' protocol-B curves of seed 0); the other spectrum has the same
    top. Nothing in a class labelled once, nor where peaks are not
    resolved; a spike in every spectrum is a hot pixel."""
    X = np.asarray(X, np.float64)
    found = np.zeros(X.shape, bool)
    if X.shape[1] < 10:  # judged on four points each side
        return found
    gain = np.maximum(noise_gain(X), 0.0)
    for c in range(n_classes):
        members = np.flatnonzero(y_idx == c)
        if len(members) < 2:
            continue
        M = X[members]
        Z = M - M.mean(1, keepdims=True)
        Z /= np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-300)
        alike = Z @ Z.T
        np.fill_diagonal(alike, -np.inf)
        R = M[alike.argmax(1)]
        scale = (M * R).sum(1, keepdims=True) / np.maximum((R * R).sum(1, keepdims=True), 1e-300)
        above = M - scale * R
        counting = gain[members, None] * (np.maximum(M, 0.0) + scale ** 2 * np.maximum(R, 0.0))
        sigma = _noise(above, counting)
        # the curvature two and three points out: where a peak turns it can
        # vanish by chance at one point in one spectrum's noise, not at both
        runs = (_narrow_runs(above, sigma, 1, SHARPNESS, beside=(2, 3))
                | _narrow_runs(above, sigma, 2, SHARPNESS_PAIR, beside=(2, 3)))
        found[members] = runs & (above > 0)
    return found & _resolved(X, found) if found.any() else found


def bridge_spikes(X, found) -> np.ndarray:
    """A copy of the spectra ``X`` with each row's ``found`` points (a mask
    like :func:`spikes`') bridged (:func:`.preprocess.bridge_points`)."""
    X = np.array(X, copy=True)
    for r in np.flatnonzero(found.any(1)):
        X[r] = bridge_points(X[r:r + 1], np.flatnonzero(found[r]))[0]
    return X


def _noise(m, counting):
    """Per point, the standard deviation of the spectrum ``m`` (or of each
    row of ``m``): what its second differences spread by around the point,
    or the variance ``counting`` of the counts where that is more (the top
    of a hot pixel)."""
    d2 = np.abs(m[..., :-2] - 2.0 * m[..., 1:-1] + m[..., 2:])
    # median |N(0, s)| = 0.6745 s, and a second difference has 6 times the variance
    spread = _running_median(d2) / (0.6745 * np.sqrt(6.0))
    spread = np.concatenate([spread[..., :1], spread, spread[..., -1:]], axis=-1)
    return np.sqrt(np.maximum(spread * spread, counting))


def _running_median(v, step=8):
    """The median of ``v`` over :data:`_NOISE_POINTS` around each point
    (along the last axis; the ends repeated beyond it), taken at every
    ``step``-th point and held over the ``step`` points around it: the
    noise changes slowly along a spectrum, and an exact running median
    of every point cost most of :func:`spikes`' time (8 times this)."""
    n, half = v.shape[-1], _NOISE_POINTS // 2
    padded = np.pad(v, [(0, 0)] * (v.ndim - 1) + [(half, half)], mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, _NOISE_POINTS, axis=-1)
    held = np.arange(n) // step
    centres = np.minimum(np.arange(held[-1] + 1) * step + step // 2, n - 1)
    return np.median(windows[..., centres, :], axis=-1)[..., held]


def _narrow_runs(m, sigma, width, sharpness, beside=(2,)):
    """Points of the runs of ``width`` points above (or below) both
    neighbours by ``SIGMAS`` times the noise, with a curvature
    ``sharpness`` times the largest ``beside`` points out on either side
    (along the last axis)."""
    p = m.shape[-1]
    d2 = np.zeros(m.shape)
    d2[..., 1:-1] = m[..., :-2] - 2.0 * m[..., 1:-1] + m[..., 2:]
    i = np.arange(1 + max(beside), p - width - max(beside))
    excess = (np.stack([m[..., i + j] for j in range(width)])
              - 0.5 * (m[..., i - 1] + m[..., i + width]))
    noise = np.sqrt(sigma[..., i] ** 2
                    + 0.25 * (sigma[..., i - 1] ** 2 + sigma[..., i + width] ** 2))
    # every point of the run, on one side: a hot pixel and its neighbour are no pair
    stands_out = ((np.sign(excess) == np.sign(excess[0])).all(0)
                  & (np.abs(excess).min(0) > SIGMAS * noise))
    inner = np.abs(np.stack([d2[..., i + j] for j in range(width)]).mean(0))
    outer = np.max([np.abs(d2[..., i + k]) for d in beside for k in (-d, width - 1 + d)], 0)
    at = np.nonzero(stands_out & (inner > sharpness * outer))
    hit = np.zeros(m.shape, bool)
    for j in range(width):
        hit[at[:-1] + (i[at[-1]] + j,)] = True
    return hit


def _resolved(X, found):
    """Per point, whether the instrument draws peaks there :data:`RESOLVED`
    points wide or more, measured with the ``found`` points bridged over
    (a mask of points: in every spectrum; of spectra and points: in
    each); nowhere where no peak shape can be measured."""
    from .denoise import peak_shape

    shape = peak_shape(bridge_points(X, np.flatnonzero(found)) if found.ndim == 1
                       else bridge_spikes(X, found))
    if shape is None:
        return np.zeros(X.shape[1], bool)
    return shape.fwhm(np.arange(X.shape[1])) >= RESOLVED
