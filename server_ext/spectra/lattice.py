"""Powder-diffraction physics for the synthetic series: reflections of a
crystal lattice, their d-spacings, structure-factor intensities and Bragg
angles.

A structure is a lattice (cell lengths and angles; cubic, tetragonal,
orthorhombic or hexagonal) with a few atoms at fractional coordinates. Its
powder pattern is the set of reflections ``hkl`` with their d-spacing and
``multiplicity x |F(hkl)|^2 x Lorentz-polarisation x Debye-Waller`` as the
integrated intensity. Scaling the cell by ``1 + e`` scales every d by
``1 + e``: on a ``q = 2 pi / d`` axis every peak moves by the same factor, on
a 2-theta axis by ``sin(theta) -> sin(theta) / (1 + e)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Structure", "random_structure", "distorted", "reflections", "two_theta", "q_of"]


@dataclasses.dataclass(frozen=True)
class Structure:
    """Cell lengths ``a, b, c`` (angstrom), ``gamma`` (degrees; 90 or 120),
    atoms at fractional ``positions`` (m, 3) with scattering ``factors`` (m,),
    and an isotropic displacement parameter ``b_iso`` (angstrom^2)."""

    a: float
    b: float
    c: float
    gamma: float
    positions: np.ndarray
    factors: np.ndarray
    b_iso: float = 0.6

    def scaled(self, factor: float) -> "Structure":
        """The same structure in a cell ``factor`` times larger (every d too)."""
        return dataclasses.replace(self, a=self.a * factor, b=self.b * factor,
                                   c=self.c * factor)


def random_structure(rng) -> Structure:
    """A random small-cell structure of a random crystal system."""
    system = rng.choice(["cubic", "tetragonal", "orthorhombic", "hexagonal"])
    a = rng.uniform(3.6, 6.0)
    b, c, gamma = a, a, 90.0
    if system == "tetragonal":
        c = a * rng.uniform(1.05, 1.6)
    elif system == "orthorhombic":
        b, c = a * rng.uniform(1.05, 1.3), a * rng.uniform(1.3, 1.7)
    elif system == "hexagonal":
        c, gamma = a * rng.uniform(1.4, 1.8), 120.0
    m = int(rng.integers(2, 5))
    return Structure(a, b, c, gamma, rng.uniform(0.0, 1.0, (m, 3)),
                     rng.uniform(6.0, 40.0, m), float(rng.uniform(0.3, 1.2)))


def distorted(s: Structure, rng, strength: float = 0.03) -> Structure:
    """A symmetry-lowering distortion of ``s`` (a phase transition to a
    related structure): the cell lengths change by up to ``strength`` in
    different directions, so reflections split and move, and the atoms move
    a little, so intensities change."""
    da, db, dc = rng.uniform(-strength, strength, 3)
    return dataclasses.replace(
        s, a=s.a * (1 + da), b=s.b * (1 + db), c=s.c * (1 + dc),
        positions=(s.positions + rng.normal(0.0, 0.04, s.positions.shape)) % 1.0)


def _d_spacing(s: Structure, hkl: np.ndarray) -> np.ndarray:
    h, k, l = (hkl[:, i].astype(np.float64) for i in range(3))
    if s.gamma == 120.0:
        inv = 4.0 / 3.0 * (h * h + h * k + k * k) / s.a ** 2 + l * l / s.c ** 2
    else:
        inv = (h / s.a) ** 2 + (k / s.b) ** 2 + (l / s.c) ** 2
    with np.errstate(divide="ignore"):
        return 1.0 / np.sqrt(inv)


def reflections(s: Structure, d_min: float, superlattice: bool = False):
    """``(d, intensity)`` of the reflections with ``d >= d_min``, equal d
    merged (their intensities add: the multiplicity). ``superlattice``:
    the reflections of a doubled cell along ``a`` that the small cell
    forbids (``h`` half-integer), as appear with a weak ordering."""
    n = int(np.ceil(max(s.a, s.b, s.c) / d_min)) + 1
    r = np.arange(-n, n + 1)
    hkl = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3).astype(np.float64)
    hkl = hkl[np.abs(hkl).sum(1) > 0]
    if superlattice:
        hkl[:, 0] += 0.5
    d = _d_spacing(s, hkl)
    hkl, d = hkl[d >= d_min], d[d >= d_min]
    phase = 2j * np.pi * hkl @ s.positions.T
    F = (s.factors[None, :] * np.exp(phase)).sum(1)
    inten = np.abs(F) ** 2 * np.exp(-s.b_iso / (2.0 * d * d))
    _, inv = np.unique(np.round(d, 5), return_inverse=True)
    total = np.bincount(inv, weights=inten)
    d = np.bincount(inv, weights=d) / np.bincount(inv)
    keep = total > 1e-4 * total.max()  # weaker ones are lost in the noise
    return d[keep], total[keep]


def two_theta(d: np.ndarray, wavelength: float) -> np.ndarray:
    """Bragg angle 2-theta (degrees) of d-spacings; NaN where none."""
    with np.errstate(invalid="ignore"):
        return 2.0 * np.degrees(np.arcsin(wavelength / (2.0 * d)))


def q_of(tth: np.ndarray, wavelength: float) -> np.ndarray:
    """Momentum transfer q = 4 pi sin(theta) / lambda (1/angstrom)."""
    return 4.0 * np.pi * np.sin(np.radians(tth) / 2.0) / wavelength
