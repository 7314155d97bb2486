"""Synthetic powder-diffraction spectra through a phase transition.

Used by the tests, the benchmark and the hub demo. The model is deliberately
richer than what the classifier assumes, so that a good score here means
something:

* pseudo-Voigt reflections whose width grows with angle (Caglioti-like),
* a smooth background (decaying air scatter plus a broad amorphous hump)
  whose level drifts along the series,
* Poisson counting noise,
* a phase transition along the series: reflections of the low-temperature
  phase vanish and new ones appear (``kind="intensity"``), or reflections
  move (``kind="shift"``), or both; near the transition the two phases
  coexist in proportion to a smooth phase fraction,
* thermal expansion (all positions drift slowly) and beam intensity drift.

Example::

    from server_ext.spectra.synthetic import make_transition_series
    series = make_transition_series(n_spectra=349, kind="shift", random_state=0)
    series.X.shape, series.y[:3], series.fraction[170]

``make_powder_series`` is the physics-based generator: the phases are
crystal structures (reflections at the d-spacings of a lattice, intensities
from structure factors), on a 2-theta or q axis, and a class can differ from
another *only* by its cell size (every peak moves), or by weak superlattice
reflections of a few per cent::

    from server_ext.spectra.synthetic import make_powder_series
    series = make_powder_series("shift", random_state=0)   # A -> B -> A'

``write_demo_run(path)`` writes such a series as a European XFEL run
directory that ``extra_data.RunDirectory`` opens.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile

import numpy as np

from .augment import increasing_axis, strain_shift
from .lattice import distorted, random_structure, reflections, two_theta

__all__ = [
    "SpectraSeries",
    "make_transition_series",
    "make_powder_series",
    "Phase",
    "LAYOUTS",
    "layout_phases",
    "perturb",
    "write_demo_run",
    "DEMO_SOURCE",
    "DEMO_KEY",
]

DEMO_SOURCE = "SPB_EXP_POWDER/PROC/AZIMUTHAL_INTEGRATION:output"
DEMO_KEY = "data.intensity"
DEMO_AXIS_SOURCE = "SPB_EXP_POWDER/PROC/AZIMUTHAL_INTEGRATION"
DEMO_TEMPERATURE_SOURCE = "SPB_EXP_SAMPLE/TEMP/CRYOSTREAM"


@dataclasses.dataclass
class SpectraSeries:
    """A generated series: spectra ``X`` (n, points), labels ``y``, the
    2-theta ``axis`` (degrees), the phase ``fraction`` of the last phase
    present (0..n_phases-1 as a continuous value), the ``temperature``, and
    ``weights`` (n, phases): each phase's fraction of each spectrum (near a
    transition two phases coexist; ``y`` names the larger)."""

    X: np.ndarray
    y: np.ndarray
    axis: np.ndarray
    fraction: np.ndarray
    temperature: np.ndarray
    transitions: list
    weights: np.ndarray


def _pseudo_voigt(x, center, fwhm, eta):
    """Unit-height pseudo-Voigt peaks, one per row (``center``, ``fwhm``: (n,))."""
    d = (x[None, :] - center[:, None]) / fwhm[:, None]
    d *= d
    return eta / (1.0 + 4.0 * d) + (1.0 - eta) * np.exp(-4.0 * np.log(2.0) * d)


def _phase_tables(rng, n_phases, kind, lo, hi, n_peaks):
    """Peak positions/intensities for each phase, derived phase by phase."""
    pos = np.sort(rng.uniform(lo + 3.0, hi - 3.0, n_peaks))
    inten = rng.uniform(0.15, 1.0, n_peaks) ** 1.5
    phases = [(pos.copy(), inten.copy())]
    for _ in range(1, n_phases):
        pos, inten = phases[-1][0].copy(), phases[-1][1].copy()
        n_change = max(2, n_peaks // 5)
        changed = rng.choice(n_peaks, size=n_change, replace=False)
        half = n_change // 2
        if kind in ("intensity", "both"):
            sel = changed[:half] if kind == "both" else changed
            # half vanish, half (new reflections) appear elsewhere
            vanish, appear = sel[: len(sel) // 2 + 1], sel[len(sel) // 2 + 1:]
            inten[vanish] *= 0.05
            for j in appear:
                pos[j] = rng.uniform(lo + 3.0, hi - 3.0)
                inten[j] = rng.uniform(0.4, 1.0)
        if kind in ("shift", "both"):
            sel = changed[half:] if kind == "both" else changed
            # symmetry lowering: reflections move by 0.8-2.5 % of their angle,
            # well beyond the +-1 % strain a classifier must tolerate
            step = rng.uniform(0.008, 0.025, len(sel)) * rng.choice([-1, 1], len(sel))
            pos[sel] = np.clip(pos[sel] * (1.0 + step), lo + 2.0, hi - 2.0)
        phases.append((pos, inten))
    return phases


def _phase_weights(t, n_phases, transition_width):
    """Equally spaced transitions along ``t`` (0..1) and the weight of each
    phase per spectrum: products of logistic steps between consecutive
    phases, so neighbours coexist near a transition."""
    transitions = [(k + 1) / n_phases for k in range(n_phases - 1)]
    steps = [1.0 / (1.0 + np.exp(-(t - tc) / (transition_width / 4.0))) for tc in transitions]
    weights = np.ones((len(t), n_phases))
    for k in range(n_phases):
        for j, s in enumerate(steps):
            weights[:, k] *= s if j < k else (1.0 - s) if j == k else 1.0
    return transitions, weights / weights.sum(1, keepdims=True)


def _observed(X, t, tth, lo, background, counts, beam, poisson, rng):
    """What the detector records of the diffracted intensity ``X``: plus a
    drifting background (air scatter and an amorphous hump over 2-theta
    ``tth``), in counts scaled by the ``beam``, with Poisson noise."""
    bg_level = background * (1.0 + 0.2 * np.sin(2 * np.pi * (t + rng.uniform())))
    bg_shape = 0.6 * np.exp(-(tth - lo) / 15.0) + 0.4 * np.exp(-0.5 * ((tth - 35.0) / 12.0) ** 2)
    X = X + bg_level[:, None] * bg_shape[None, :] / bg_shape.max()
    X *= counts * beam[:, None]
    if poisson:
        X = rng.poisson(np.maximum(X, 0.0))
    return X.astype(np.float32)


def make_transition_series(
    n_spectra: int = 349,
    n_points: int = 4020,
    kind: str = "intensity",
    n_phases: int = 2,
    n_peaks: int = 24,
    two_theta=(10.0, 90.0),
    transition_width: float = 0.02,
    counts: float = 2000.0,
    background: float = 0.15,
    expansion: float = 0.003,
    intensity_drift: float = 0.15,
    poisson: bool = True,
    random_state=0,
) -> SpectraSeries:
    """Generate a series of spectra through ``n_phases - 1`` transitions.

    Parameters
    ----------
    n_spectra, n_points : int
        Size of the series (the published data: 349 spectra of 4,020 points).
    kind : {"intensity", "shift", "both"}
        What changes at a transition: reflections vanish/appear, reflections
        move, or both.
    transition_width : float
        Width of the coexistence region as a fraction of the series.
    counts : float
        Peak height in counts of the strongest reflection (sets Poisson noise).
    background : float
        Background level relative to ``counts``.
    expansion : float
        Relative peak-position drift over the whole series (thermal expansion).
    intensity_drift : float
        Relative amplitude of the slow beam-intensity drift.
    poisson : bool
        Draw Poisson counts; ``False`` returns the expected counts.
    random_state : int
        Seed; the output is a deterministic function of all arguments.

    Labels ``y`` are the integer phase with the largest fraction.
    """
    if kind not in ("intensity", "shift", "both"):
        raise ValueError(f"kind must be 'intensity', 'shift' or 'both', not {kind!r}")
    if n_phases < 2:
        raise ValueError("n_phases must be >= 2")
    rng = np.random.default_rng(random_state)
    lo, hi = two_theta
    axis = np.linspace(lo, hi, n_points)
    phases = _phase_tables(rng, n_phases, kind, lo, hi, n_peaks)

    t = np.linspace(0.0, 1.0, n_spectra)
    temperature = 100.0 + 200.0 * t
    transitions, weights = _phase_weights(t, n_phases, transition_width)
    y = weights.argmax(1)
    fraction = weights @ np.arange(n_phases)

    scale = 1.0 - expansion * (t - 0.5)  # thermal expansion lowers the angles
    beam = 1.0 + intensity_drift * np.sin(2 * np.pi * (0.7 * t + rng.uniform()))
    beam *= rng.normal(1.0, 0.03, n_spectra)
    X = np.zeros((n_spectra, n_points))
    for k, (pos, inten) in enumerate(phases):
        for p0, i0 in zip(pos, inten):
            center = p0 * scale
            th = np.radians(center / 2.0)
            fwhm = np.sqrt(0.004 * np.tan(th) ** 2 + 0.002 * np.tan(th) + 0.01)
            X += (weights[:, k] * i0)[:, None] * _pseudo_voigt(axis, center, fwhm, 0.4)
    X = _observed(X, t, axis, lo, background, counts, beam, poisson, rng)
    return SpectraSeries(X=X, y=y, axis=axis, fraction=fraction,
                         temperature=temperature, transitions=transitions, weights=weights)


@dataclasses.dataclass(frozen=True)
class Phase:
    """One state of a powder series: ``structure`` (index of the series'
    crystal structures: 0 a random one, 1 a distortion of it, 2 another
    random one), ``cell`` (relative cell size: 1.01 = every d-spacing 1 %
    larger, every peak moved) and ``weak`` (height of superlattice
    reflections relative to the strongest peak; 0: none)."""

    structure: int
    cell: float = 1.0
    weak: float = 0.0


def layout_phases(name: str, cell_step: float = 0.01, weak: float = 0.03) -> tuple:
    """The phases of a named layout (see :data:`LAYOUTS`)."""
    layouts = {
        # A -> B -> A': A' differs from A only by a larger (or smaller) cell
        "shift": (Phase(0), Phase(1), Phase(0, 1.0 + cell_step)),
        # A -> A' -> B -> B': two structures, each seen at two cell sizes
        "shift4": (Phase(0), Phase(0, 1.0 + cell_step), Phase(2), Phase(2, 1.0 + cell_step)),
        # A -> A + weak superlattice peaks -> distorted A -> another structure
        "weak": (Phase(0), Phase(0, 1.0, weak), Phase(1), Phase(2)),
        # structural transitions only: position is nuisance everywhere
        "pattern": (Phase(0), Phase(1), Phase(2)),
    }
    if name not in layouts:
        raise ValueError(f"layout must be one of {sorted(layouts)}, not {name!r}")
    return layouts[name]


#: the named class layouts of :func:`make_powder_series`
LAYOUTS = ("shift", "shift4", "weak", "pattern")


def _powder_axis(axis_kind, n_points, lo, hi, wavelength):
    """``(axis, two_theta)`` of the points: uniform in 2-theta (degrees)
    from ``lo`` to ``hi``, or uniform in q over the same angles."""
    if axis_kind == "2theta":
        axis = np.linspace(lo, hi, n_points)
        return axis, axis
    q = 4 * np.pi / wavelength * np.sin(np.linspace(np.radians(lo / 2), np.radians(hi / 2),
                                                    n_points))
    return q, 2 * np.degrees(np.arcsin(np.clip(q * wavelength / (4 * np.pi), 0, 1)))


def _phase_reflections(structure, weak, d_min, wavelength):
    """``(d, intensity)`` of a phase's reflections down to ``d_min``, with
    its superlattice reflections at ``weak`` of the strongest peak."""
    d, inten = reflections(structure, d_min)
    if weak > 0:
        d_s, i_s = reflections(structure, d_min, superlattice=True)
        i_s = i_s * _weak_scale(structure, d_min, weak, wavelength)
        d, inten = np.concatenate([d, d_s]), np.concatenate([inten, i_s])
    return d, inten


def _add_peaks(X, present, fraction, cell, d, inten, tth, lo, wavelength):
    """Add to the rows ``present`` of ``X`` a phase's peaks (reflections
    ``d``, ``inten`` of the unit cell) in a cell ``cell`` times as large,
    at ``fraction`` of the sample."""
    for d0, i0 in zip(d, inten):
        center = two_theta(d0 * cell, wavelength)
        if not (center > lo - 2).any():  # NaN: beyond back-scattering
            continue
        center = np.nan_to_num(center, nan=179.0)
        fwhm, lp = _width_and_lp(center)
        # the profile beyond 15 FWHM is below 1e-3 of its height: not drawn
        a, b = np.searchsorted(tth, [center.min() - 15 * fwhm.max(),
                                     center.max() + 15 * fwhm.max()])
        if b > a:
            X[present, a:b] += (fraction * i0 * lp / fwhm)[:, None] * \
                _pseudo_voigt(tth[a:b], center, fwhm, 0.4)


def make_powder_series(
    layout="shift",
    n_spectra: int = 360,
    n_points: int = 4020,
    axis_kind: str = "2theta",
    two_theta_range=(10.0, 90.0),
    wavelength: float = 1.5406,
    cell_step: float = 0.01,
    drift: float = 0.3,
    weak: float = 0.03,
    transition_width: float = 0.02,
    counts: float = 2000.0,
    background: float = 0.15,
    intensity_drift: float = 0.15,
    poisson: bool = True,
    random_state=0,
) -> SpectraSeries:
    """Powder patterns of a sample going through a sequence of phases.

    ``layout``: a name of :data:`LAYOUTS` or a sequence of :class:`Phase`.
    ``axis_kind``: ``"2theta"`` (degrees, uniform) or ``"q"`` (1/angstrom,
    uniform in q over the same angular range). ``cell_step``: relative cell
    change between the classes that differ by position only. ``drift``:
    thermal expansion within one class's stretch of the series, as a
    fraction of ``cell_step`` (the whole series expands ``n_phases`` times
    that). ``weak``: height of the superlattice reflections of a ``weak``
    phase relative to the strongest peak. The rest as in
    :func:`make_transition_series` (pseudo-Voigt peaks with Caglioti widths,
    Lorentz-polarisation, Debye-Waller, background, beam drift, Poisson
    noise, coexisting phases near a transition). Labels ``y``: the phase
    with the largest fraction.
    """
    if axis_kind not in ("2theta", "q"):
        raise ValueError(f"axis_kind must be '2theta' or 'q', not {axis_kind!r}")
    phases = layout_phases(layout, cell_step, weak) if isinstance(layout, str) else tuple(layout)
    if len(phases) < 2:
        raise ValueError("a series needs at least 2 phases")
    rng = np.random.default_rng(random_state)
    base = random_structure(rng)
    structures = [base, distorted(base, rng), random_structure(rng)]
    lo, hi = two_theta_range
    axis, tth = _powder_axis(axis_kind, n_points, lo, hi, wavelength)
    # every reflection that any phase can bring into view at any drift
    d_min = wavelength / (2 * np.sin(np.radians(hi / 2))) * 0.95

    t = np.linspace(0.0, 1.0, n_spectra)
    transitions, weights = _phase_weights(t, len(phases), transition_width)
    y = weights.argmax(1)
    thermal = 1.0 + drift * abs(cell_step) * len(phases) * (t - 0.5)
    beam = 1.0 + intensity_drift * np.sin(2 * np.pi * (0.7 * t + rng.uniform()))
    beam *= rng.normal(1.0, 0.03, n_spectra)

    X = np.zeros((n_spectra, n_points))
    norm = None
    for k, ph in enumerate(phases):
        present = weights[:, k] > 1e-4
        if not present.any():
            continue
        d, inten = _phase_reflections(structures[ph.structure], ph.weak, d_min, wavelength)
        _add_peaks(X, present, weights[present, k], ph.cell * thermal[present], d, inten, tth,
                   lo, wavelength)
        if norm is None:
            norm = X[present].max()
    X /= norm
    X = _observed(X, t, tth, lo, background, counts, beam, poisson, rng)
    return SpectraSeries(X=X, y=y, axis=axis,
                         fraction=weights @ np.arange(len(phases)),
                         temperature=100.0 + 200.0 * t, transitions=transitions,
                         weights=weights)


def _width_and_lp(center):
    """Caglioti-like FWHM (degrees) and Lorentz-polarisation factor at 2-theta."""
    th = np.radians(center / 2.0)
    fwhm = np.sqrt(0.004 * np.tan(th) ** 2 + 0.002 * np.tan(th) + 0.01)
    return fwhm, (1 + np.cos(2 * th) ** 2) / (np.sin(th) ** 2 * np.cos(th))


def _weak_scale(s, d_min, weak, wavelength):
    """Factor that makes the strongest superlattice peak ``weak`` times the
    strongest main peak (heights: intensity x Lorentz-polarisation / width)."""
    def strongest(d, inten):
        fwhm, lp = _width_and_lp(np.nan_to_num(two_theta(d, wavelength), nan=179.0))
        return (inten * lp / fwhm).max()

    return weak * strongest(*reflections(s, d_min)) / strongest(
        *reflections(s, d_min, superlattice=True))


def perturb(X, axis=None, strain=0.01, intensity=0.3, random_state=0):
    """Return a copy of ``X`` with a random peak-position strain and intensity
    scale per spectrum, drawn uniformly in ``+-strain`` and ``1 +- intensity``.

    The strain scales positions about the axis origin (2-theta = 0 for powder
    data, ``d`` changes by ``strain``); with ``axis=None`` the point index is
    the axis. Used to check robustness, not for training.
    """
    X = np.asarray(X, dtype=np.float64)
    rng = np.random.default_rng(random_state)
    n, p = X.shape
    s = rng.uniform(-strain, strain, n)
    a = rng.uniform(1.0 - intensity, 1.0 + intensity, n)
    out = strain_shift(X, np.arange(n), increasing_axis(axis, p), s, np.zeros(n))
    return (a[:, None] * out).astype(np.float32)


def _write_run_file(path, source, key, tids, spectra, axis, temperature):
    """Write one EuXFEL-format (1.0) run file with h5py."""
    import h5py

    inst_src, group = source, key.split(".", 1)[0]
    ctrl_src = source.split(":", 1)[0]
    n_trains, n_pulses, n_points = spectra.shape
    with h5py.File(path, "w") as f:
        f["INDEX/trainId"] = tids.astype(np.uint64)
        f["INDEX/timestamp"] = (1_700_000_000 * 10**9 + np.arange(n_trains) * 10**8).astype(np.uint64)
        f["INDEX/flag"] = np.ones(n_trains, np.int32)
        f["INDEX/origin"] = -np.ones(n_trains, np.int32)

        f[f"INDEX/{inst_src}/{group}/first"] = (np.arange(n_trains) * n_pulses).astype(np.uint64)
        f[f"INDEX/{inst_src}/{group}/count"] = np.full(n_trains, n_pulses, np.uint64)
        base = f"INSTRUMENT/{inst_src}/{group}"
        f[f"{base}/trainId"] = np.repeat(tids, n_pulses).astype(np.uint64)
        f[f"{base}/pulseId"] = np.tile(np.arange(n_pulses), n_trains).astype(np.uint64)
        f.create_dataset(f"{base}/{key.split('.', 1)[1]}",
                         data=spectra.reshape(n_trains * n_pulses, n_points),
                         chunks=(n_pulses, n_points))

        ctrl = {
            ctrl_src: {"twoTheta": np.repeat(axis[None].astype(np.float64), n_trains, 0)},
            DEMO_TEMPERATURE_SOURCE: {"temperature": temperature.astype(np.float64)},
        }
        for src, keys in ctrl.items():
            f[f"INDEX/{src}/first"] = np.arange(n_trains, dtype=np.uint64)
            f[f"INDEX/{src}/count"] = np.ones(n_trains, np.uint64)
            for k, v in keys.items():
                f[f"CONTROL/{src}/{k}/value"] = v
                f[f"CONTROL/{src}/{k}/timestamp"] = np.zeros(n_trains, np.uint64)
                f[f"RUN/{src}/{k}/value"] = v[:1]
                f[f"RUN/{src}/{k}/timestamp"] = np.zeros(1, np.uint64)

        sources = [f"CONTROL/{s}" for s in ctrl] + [f"INSTRUMENT/{inst_src}/{group}"]
        vlen = h5py.special_dtype(vlen=bytes)
        md = f.create_group("METADATA/dataSources")
        md.create_dataset("dataSourceId", data=[s.encode() for s in sources], dtype=vlen)
        md.create_dataset("root", data=[s.split("/", 1)[0].encode() for s in sources], dtype=vlen)
        md.create_dataset("deviceId", data=[s.split("/", 1)[1].encode() for s in sources], dtype=vlen)
        f["METADATA/dataFormatVersion"] = [b"1.2"]
        f["METADATA/creationDate"] = [b"20240101T000000Z"]
        f["METADATA/updateDate"] = [b"20240101T000500Z"]
        f["METADATA/daqLibrary"] = [b"1.9.0"]
        f["METADATA/karaboFramework"] = [b"2.17.0"]
        f["METADATA/proposalNumber"] = np.array([900000], np.uint32)
        f["METADATA/runNumber"] = np.array([1], np.uint32)
        f["METADATA/sequenceNumber"] = np.array([0], np.uint32)
        f["METADATA/runType"] = [b"Synthetic powder diffraction"]
        f["METADATA/sample"] = [b"synthetic phase-transition sample"]


def write_demo_run(
    data_dir: pathlib.Path,
    n_trains: int = 200,
    pulses_per_train: int = 8,
    n_points: int = 4020,
    kind: str = "both",
    first_train: int = 1_200_000_000,
    random_state: int = 0,
) -> dict:
    """Write a spectra series through a phase transition as an EuXFEL run.

    The run directory ``data_dir / "r0001"`` holds one file,
    ``RAW-R0001-DA01-S00000.h5``, with the spectra at ``(DEMO_SOURCE,
    DEMO_KEY)`` (``pulses_per_train`` spectra per train; the phase fraction
    changes from train to train, the pulses of a train are independent noisy
    measurements), the 2-theta axis as a control key, and a sample
    temperature ramp. Deterministic for a given ``random_state``; the
    directory is written under a temporary name and renamed into place, and an
    existing one is kept.

    Returns a dict: ``path``, ``source``, ``key``, ``axis_source``,
    ``axis_key``, ``n_trains``, ``pulses_per_train``, ``n_points``,
    ``first_train``, ``transition_train`` (first train of the new phase) and
    ``labels`` (train-id ranges of the pure phases, usable as
    ``daas spectra train --labels``).
    """
    data_dir = pathlib.Path(data_dir)
    run_dir = data_dir / "r0001"
    # Pulses: independent Poisson draws around each train's expected spectrum.
    series = make_transition_series(
        n_spectra=n_trains, n_points=n_points, kind=kind, n_phases=2,
        transition_width=0.05, random_state=random_state, counts=1000.0,
        poisson=False,
    )
    tids = np.arange(first_train, first_train + n_trains, dtype=np.uint64)
    transition_idx = int(np.argmax(series.y == 1))
    info = {
        "path": str(run_dir),
        "source": DEMO_SOURCE,
        "key": DEMO_KEY,
        "axis_source": DEMO_AXIS_SOURCE,
        "axis_key": "twoTheta",
        "n_trains": n_trains,
        "pulses_per_train": pulses_per_train,
        "n_points": n_points,
        "first_train": first_train,
        "transition_train": first_train + transition_idx,
        "labels": {
            "low": [first_train, first_train + max(1, transition_idx // 3)],
            "high": [first_train + n_trains - max(1, (n_trains - transition_idx) // 3),
                     first_train + n_trains],
        },
    }
    if run_dir.is_dir():
        return info
    rng = np.random.default_rng(random_state + 1)
    lam = np.repeat(series.X[:, None, :], pulses_per_train, axis=1)
    spectra = rng.poisson(np.maximum(lam, 0.0)).astype(np.float32)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".r0001-", dir=data_dir))
    try:
        _write_run_file(tmp / "RAW-R0001-DA01-S00000.h5", DEMO_SOURCE, DEMO_KEY,
                        tids, spectra, series.axis, series.temperature)
        os.replace(tmp, run_dir)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info
