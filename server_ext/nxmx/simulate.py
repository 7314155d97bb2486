"""Kinematic still diffraction of a crystal onto an ``extra_geom`` detector.

For tests and the demo: a crystal of known unit cell and orientation, one
monochromatic still per frame, painted into the detector's data array
``(modules, slow, fast)`` in photons, with Poisson noise on a flat
background. The spot of each reflection near the Ewald sphere sits where
its mosaic block diffracts: the reciprocal lattice vector rotated onto the
sphere in the plane it spans with the beam, its strength falling off as a
Gaussian of the distance from the sphere (``excitation_width``).

Frame: McStas (x left looking downstream, y up, z along the beam), the
frame of ``extra_geom`` and of the NXmx files; pixel positions are the
geometry's plus the detector distance along z, as ``convert_run`` writes
them. Lengths in mm and Å.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import tiles


@dataclass(frozen=True)
class Crystal:
    """A lattice: ``unit_cell`` (a, b, c in Å; alpha, beta, gamma in °) and
    ``U``, the rotation from the crystal's Cartesian frame to the lab."""

    unit_cell: tuple
    U: np.ndarray

    @property
    def B(self) -> np.ndarray:
        """Reciprocal basis (columns a*, b*, c*, Å⁻¹) in the crystal's
        Cartesian frame (Busing & Levy: a* along x, c along z)."""
        a, b, c = self.unit_cell[:3]
        al, be, ga = np.radians(self.unit_cell[3:])
        volume = a * b * c * np.sqrt(1 - np.cos(al) ** 2 - np.cos(be) ** 2 - np.cos(ga) ** 2
                                     + 2 * np.cos(al) * np.cos(be) * np.cos(ga))
        ast, bst, cst = b * c * np.sin(al) / volume, a * c * np.sin(be) / volume, a * b * np.sin(ga) / volume
        cos_best = (np.cos(al) * np.cos(ga) - np.cos(be)) / (np.sin(al) * np.sin(ga))
        cos_gast = (np.cos(al) * np.cos(be) - np.cos(ga)) / (np.sin(al) * np.sin(be))
        sin_best, sin_gast = np.sqrt(1 - cos_best ** 2), np.sqrt(1 - cos_gast ** 2)
        return np.array([
            [ast, bst * cos_gast, cst * cos_best],
            [0.0, bst * sin_gast, -cst * sin_best * np.cos(al)],
            [0.0, 0.0, 1.0 / c],
        ])

    @property
    def A(self) -> np.ndarray:
        """``U @ B``: the reciprocal lattice vector of hkl is ``A @ hkl`` (lab, Å⁻¹)."""
        return np.asarray(self.U) @ self.B


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix drawn uniformly (from a random unit quaternion)."""
    w, x, y, z = rng.normal(size=4) / 1.0
    n = np.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


@dataclass(frozen=True)
class PaintedSpot:
    """Where a reflection was painted: data coordinates (module, slow, fast,
    in pixels from the module's first pixel corner), Miller index and the
    expected photons."""

    module: int
    slow: float
    fast: float
    hkl: tuple
    photons: float


def _tile_planes(geom, distance_mm):
    out = []
    for t in tiles(geom):
        corner = t.corner_mm + np.array([0.0, 0.0, distance_mm])
        f, s = t.fs_vec_mm, t.ss_vec_mm
        metric = np.array([[f @ f, f @ s], [s @ f, s @ s]])
        out.append((t, corner, f, s, np.cross(f, s), np.linalg.inv(metric)))
    return out


def detector_d_min(geom, distance_mm: float, wavelength_A: float) -> float:
    """The finest resolution (Å) any pixel of *geom* sees at *distance_mm*."""
    return wavelength_A / (2 * np.sin(_max_two_theta(geom, distance_mm) / 2))


def _max_two_theta(geom, distance_mm):
    pos = geom.get_pixel_positions() * 1e3
    pos = pos.reshape(-1, 3) + np.array([0.0, 0.0, distance_mm])
    return float(np.arccos(np.clip(pos[:, 2] / np.linalg.norm(pos, axis=1), -1, 1)).max())


def reflections_on_detector(geom, crystal: Crystal, wavelength_A: float, distance_mm: float, *,
                            excitation_width: float = 8e-4, min_partiality: float = 0.05,
                            rng: np.random.Generator | None = None, mean_photons: float = 400.0,
                            d_min: float | None = None):
    """Reflections near the Ewald sphere that hit a tile, as :class:`PaintedSpot`.

    Expected photons: *mean_photons* times an exponential (Wilson) draw
    times the partiality ``exp(-eps² / 2 width²)`` (eps: distance of the
    reciprocal lattice point from the sphere, Å⁻¹). *d_min*: resolution
    limit (Å; default: the detector's corner, :func:`detector_d_min`).
    """
    rng = rng or np.random.default_rng(0)
    k = 1.0 / wavelength_A
    if d_min is None:
        d_min = detector_d_min(geom, distance_mm, wavelength_A)
    A = crystal.A
    hmax = [int(np.ceil(np.linalg.norm(np.linalg.inv(A)[i]) / d_min)) for i in range(3)]
    grids = np.meshgrid(*(np.arange(-m, m + 1) for m in hmax), indexing="ij")
    hkl = np.stack([g.ravel() for g in grids], axis=1)
    hkl = hkl[np.any(hkl != 0, axis=1)]
    q = hkl @ A.T
    s0 = np.array([0.0, 0.0, k])
    eps = np.linalg.norm(q + s0, axis=1) - k
    partiality = np.exp(-0.5 * (eps / excitation_width) ** 2)
    qn = np.linalg.norm(q, axis=1)
    keep = (partiality >= min_partiality) & (qn < 2 * k) & (qn <= 1 / d_min)
    hkl, q, qn, partiality = hkl[keep], q[keep], qn[keep], partiality[keep]
    # Rotate q onto the sphere in the plane of the beam and q.
    qz = -qn ** 2 / (2 * k)
    perp = q.copy()
    perp[:, 2] = 0.0
    pn = np.linalg.norm(perp, axis=1)
    ok = pn > 1e-12
    hkl, q, qn, qz, perp, pn, partiality = (a[ok] for a in (hkl, q, qn, qz, perp, pn, partiality))
    q_on = perp / pn[:, None] * np.sqrt(np.clip(qn ** 2 - qz ** 2, 0, None))[:, None]
    q_on[:, 2] = qz
    u = s0 + q_on
    u /= np.linalg.norm(u, axis=1)[:, None]
    photons = mean_photons * rng.exponential(1.0, len(hkl)) * partiality
    spots = []
    for t, corner, f, s, normal, inv_metric in _tile_planes(geom, distance_mm):
        denom = u @ normal
        with np.errstate(divide="ignore", invalid="ignore"):
            dist = (corner @ normal) / denom
        hit = np.isfinite(dist) & (dist > 0)
        if not hit.any():
            continue
        rel = dist[hit, None] * u[hit] - corner
        fs_ss = np.stack([rel @ f, rel @ s], axis=1) @ inv_metric.T
        nfs, nss = t.fs_slice.stop - t.fs_slice.start, t.ss_slice.stop - t.ss_slice.start
        inside = (fs_ss[:, 0] >= 0) & (fs_ss[:, 0] < nfs) & (fs_ss[:, 1] >= 0) & (fs_ss[:, 1] < nss)
        for i, (a, b) in zip(np.flatnonzero(hit)[inside], fs_ss[inside]):
            spots.append(PaintedSpot(t.module, t.ss_slice.start + b, t.fs_slice.start + a,
                                     tuple(int(x) for x in hkl[i]), float(photons[i])))
    return spots


def paint(image_shape, geom, spots, rng: np.random.Generator, *, background: float = 0.5,
          spot_sigma_px: float = 0.8) -> np.ndarray:
    """The frame (modules, slow, fast) in photons: Poisson noise on a flat
    *background* plus each spot as a Gaussian, kept inside its own tile."""
    expected = np.full(image_shape, background, np.float64)
    tile_of = {}
    for t in tiles(geom):
        tile_of.setdefault(t.module, []).append(t)
    r = int(np.ceil(4 * spot_sigma_px))
    for spot in spots:
        tile = next(t for t in tile_of[spot.module]
                    if t.ss_slice.start <= spot.slow < t.ss_slice.stop
                    and t.fs_slice.start <= spot.fast < t.fs_slice.stop)
        s0 = max(tile.ss_slice.start, int(spot.slow) - r)
        s1 = min(tile.ss_slice.stop, int(spot.slow) + r + 1)
        f0 = max(tile.fs_slice.start, int(spot.fast) - r)
        f1 = min(tile.fs_slice.stop, int(spot.fast) + r + 1)
        ss = np.arange(s0, s1)[:, None] + 0.5
        fs = np.arange(f0, f1)[None, :] + 0.5
        g = np.exp(-0.5 * ((ss - spot.slow) ** 2 + (fs - spot.fast) ** 2) / spot_sigma_px ** 2)
        expected[spot.module, s0:s1, f0:f1] += spot.photons * g / (2 * np.pi * spot_sigma_px ** 2)
    return rng.poisson(expected).astype(np.float32)


def still(geom, crystal: Crystal, wavelength_A: float, distance_mm: float,
          rng: np.random.Generator, **kwargs):
    """One simulated still: ``(frame, spots)`` (see :func:`reflections_on_detector`
    and :func:`paint`; keyword arguments go to whichever takes them)."""
    paint_kw = {k: kwargs.pop(k) for k in ("background", "spot_sigma_px") if k in kwargs}
    spots = reflections_on_detector(geom, crystal, wavelength_A, distance_mm, rng=rng, **kwargs)
    frame = paint(tuple(geom.expected_data_shape), geom, spots, rng, **paint_kw)
    return frame, spots
