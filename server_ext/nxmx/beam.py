"""Beam quantities per frame from the run's X-ray gas monitor (XGM).

The XGM records one pulse energy (µJ) per pulse of each train in
``data.intensityTD``; the k-th detector frame of a train (ordered by pulse
ID) is taken to see the k-th pulse, which holds when the detector records
one frame per delivered pulse, as in serial crystallography.
"""

from dataclasses import dataclass

import numpy as np

from .errors import CorruptRunError, MissingMetadataError

HC_KEV_ANGSTROM = 12.398419843320026  # h*c in keV * Angstrom
HC_J_M = 1.98644586e-25  # h*c in J * m
TRAIN_PERIOD_S = 0.1  # trains arrive at 10 Hz

ENERGY_KEY = "data.intensityTD"
WAVELENGTH_KEY = "pulseEnergy.wavelengthUsed"  # nm


@dataclass
class Beam:
    """Per-frame beam values, ready for NXbeam."""

    wavelength_A: np.ndarray
    pulse_energy_uJ: np.ndarray | None  # None without an XGM

    def select(self, keep):
        """Keep only frames where the boolean array *keep* is true (as
        :meth:`FrameTable.select`, so beam and frames stay aligned)."""
        self.wavelength_A = self.wavelength_A[keep]
        if self.pulse_energy_uJ is not None:
            self.pulse_energy_uJ = self.pulse_energy_uJ[keep]

    @property
    def photons_per_pulse(self):
        """Photons in each frame's pulse (``total_flux_integrated``)."""
        if self.pulse_energy_uJ is None:
            return None
        photon_J = HC_J_M / (self.wavelength_A * 1e-10)
        return self.pulse_energy_uJ * 1e-6 / photon_J

    @property
    def total_flux_Hz(self):
        """Photons per second that each frame's pulse slot receives: one
        pulse per 100 ms train period."""
        photons = self.photons_per_pulse
        return None if photons is None else photons / TRAIN_PERIOD_S


def xgm_sources(run):
    """The run's XGM output sources (those recording pulse energies), sorted."""
    return sorted(s for s in run.instrument_sources
                  if s.endswith(":output") and ENERGY_KEY in run[s].keys())


def find_xgm(run, instrument):
    """Name of the XGM output source to use, preferring the instrument's own."""
    cands = xgm_sources(run)
    if not cands:
        return None
    own = [s for s in cands if s.startswith(instrument)]
    return (own or cands)[0]


def _per_train(run, source, key):
    """(train_ids, values) for a key, first entry per train."""
    try:
        kd = run[source, key]
        return np.asarray(kd.train_id_coordinates()), kd.ndarray()
    except OSError as e:
        raise CorruptRunError(
            f"cannot read {source} {key} ({e}): a file of the run is truncated or corrupt"
        ) from None


def _rows(train_ids, table_tids):
    """Row of each train in *table_tids* (sorted), -1 where absent."""
    if not len(table_tids):
        return np.full(len(train_ids), -1, np.int64)
    pos = np.clip(np.searchsorted(table_tids, train_ids), 0, len(table_tids) - 1)
    return np.where(table_tids[pos] == train_ids, pos, -1)


def _lookup(train_ids, table_tids, values, fill=np.nan):
    """values[row of train] for each train in *train_ids*, *fill* where absent."""
    rows = _rows(train_ids, table_tids)
    out = np.full((len(train_ids),) + values.shape[1:], fill, dtype=np.float64)
    out[rows >= 0] = values[rows[rows >= 0]]
    return out


def pulse_rank(train_id):
    """Position of each frame among the frames of its train (input sorted)."""
    if not len(train_id):
        return np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, train_id[1:] != train_id[:-1]])
    counts = np.diff(np.r_[starts, len(train_id)])
    return np.arange(len(train_id)) - np.repeat(starts, counts)


def beam_for_frames(run, table, instrument, photon_energy_keV=None):
    """Per-frame :class:`Beam` for the frames of *table*."""
    xgm = find_xgm(run, instrument)
    energy = None
    if xgm is not None:
        tids, intens = _per_train(run, xgm, ENERGY_KEY)
        rows = _rows(table.train_id, tids)
        rank = pulse_rank(table.train_id)
        ok = (rows >= 0) & (rank < intens.shape[1])
        energy = np.full(len(table), np.nan)
        energy[ok] = intens[rows[ok], rank[ok]]
    if photon_energy_keV is not None:
        wl = np.full(len(table), HC_KEV_ANGSTROM / photon_energy_keV)
        return Beam(wl, energy)
    if xgm is not None:
        ctrl = xgm.split(":", 1)[0]
        if ctrl in run.control_sources and WAVELENGTH_KEY in run[ctrl]:
            tids, nm = _per_train(run, ctrl, WAVELENGTH_KEY)
            wl = _lookup(table.train_id, tids, nm.astype(np.float64)) * 10.0
            good = np.isfinite(wl) & (wl > 0)
            if good.all():
                return Beam(wl, energy)
    raise MissingMetadataError(
        "the run records no usable X-ray wavelength (XGM pulseEnergy.wavelengthUsed);"
        " give the photon energy with --photon-energy KEV (Python: photon_energy=...)"
    )
