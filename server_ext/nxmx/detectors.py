"""The detectors NXmx conversion knows, and how to find them in a run.

Each :class:`DetectorKind` holds the facts NXmx asks for that the run files
do not record (sensor, pixel size, trusted range...), plus how the
detector's per-module sources are named and laid out in the files.
"""

import re
from dataclasses import dataclass, field

import numpy as np

from .errors import DetectorNotFoundError, RawDataError, UnsupportedDetectorError


@dataclass(frozen=True)
class DetectorKind:
    """Static description of one detector type."""

    name: str
    source_re: re.Pattern
    data_key: str
    #: "xtdf": one file entry per frame (AGIPD, LPD); "cells": one entry per
    #: train holding all memory cells (JUNGFRAU).
    layout: str
    module_shape: tuple
    n_modules: int  # 0: as many as the run has
    first_module: int
    sensor_material: str
    sensor_thickness_mm: float
    #: ADC bits of the raw readout; NXmx's bit_depth_readout is written only
    #: for integer data (corrected data are floats).
    bit_depth_readout: int
    # Trusted range of *corrected* (float) values; not a hardware saturation.
    underload_value: int
    saturation_value: int
    frame_time_s: float
    count_time_s: float
    default_distance_mm: float
    description: str
    geometry_class: str  # name in extra_geom
    pulse_key: str = ""
    cell_key: str = ""
    mask_key: str = ""


AGIPD_1M = DetectorKind(
    name="AGIPD-1M",
    source_re=re.compile(r"^(?P<det>[^/]+_AGIPD1M[^/]*)/(?:DET|CORR)/(?P<mod>\d+)CH0:(?:xtdf|output)$"),
    data_key="image.data", layout="xtdf", module_shape=(512, 128), n_modules=16,
    first_module=0, sensor_material="Si", sensor_thickness_mm=0.5,
    bit_depth_readout=14, underload_value=-1000, saturation_value=10_000_000,
    frame_time_s=1 / 1.128e6, count_time_s=1 / 1.128e6, default_distance_mm=120.0,
    description="AGIPD-1M (Adaptive Gain Integrating Pixel Detector), corrected data",
    geometry_class="AGIPD_1MGeometry",
    pulse_key="image.pulseId", cell_key="image.cellId", mask_key="image.mask",
)

LPD_1M = DetectorKind(
    name="LPD-1M",
    source_re=re.compile(r"^(?P<det>[^/]+_LPD1M[^/]*)/(?:DET|CORR)/(?P<mod>\d+)CH0:(?:xtdf|output)$"),
    data_key="image.data", layout="xtdf", module_shape=(256, 256), n_modules=16,
    first_module=0, sensor_material="Si", sensor_thickness_mm=0.5,
    bit_depth_readout=12, underload_value=-1000, saturation_value=10_000_000,
    frame_time_s=1 / 1.128e6, count_time_s=1 / 1.128e6, default_distance_mm=250.0,
    description="LPD-1M (Large Pixel Detector), corrected data",
    geometry_class="LPD_1MGeometry",
    pulse_key="image.pulseId", cell_key="image.cellId", mask_key="image.mask",
)

JUNGFRAU = DetectorKind(
    name="JUNGFRAU",
    source_re=re.compile(r"^(?P<det>[^/]+_JF[^/]*)/(?:DET|CORR)/JNGFR(?P<mod>\d+):(?:daqOutput|output)$"),
    data_key="data.adc", layout="cells", module_shape=(512, 1024), n_modules=0,
    first_module=1, sensor_material="Si", sensor_thickness_mm=0.32,
    bit_depth_readout=14, underload_value=-1000, saturation_value=10_000_000,
    frame_time_s=0.1, count_time_s=10e-6, default_distance_mm=120.0,
    description="JUNGFRAU multi-module detector with memory cells, corrected data",
    geometry_class="JUNGFRAUGeometry",
    cell_key="data.memoryCell", mask_key="data.mask",
)

KINDS = (AGIPD_1M, LPD_1M, JUNGFRAU)

# Multi-module detectors seen at EuXFEL that this converter does not handle.
_OTHER_DETECTOR_RE = re.compile(r"^(?P<det>[^/]+)/(?:DET|CORR)/[^/]+:(?:xtdf|output|daqOutput)$")


@dataclass
class Detector:
    """One detector found in a run: its kind and per-module sources."""

    kind: DetectorKind
    name: str
    sources: dict = field(default_factory=dict)  # module number -> source name

    @property
    def n_modules(self):
        """Modules in the output data array (absent ones are filled)."""
        if self.kind.n_modules:
            return self.kind.n_modules
        return max(self.sources) - self.kind.first_module + 1

    def module_index(self, modno):
        return modno - self.kind.first_module

    @property
    def instrument(self):
        """EuXFEL instrument acronym, e.g. ``SPB`` from ``SPB_DET_AGIPD1M-1``."""
        return self.name.split("_", 1)[0]


def _legacy_sources(run):
    return set(getattr(run, "legacy_sources", {}) or {})


def find_detectors(run):
    """Group the run's instrument sources into supported detectors.

    Returns ``(detectors, unsupported)``: a dict name -> :class:`Detector`
    and the set of names of multi-module detectors of unknown kind.
    """
    legacy = _legacy_sources(run)
    found = {}
    unsupported = set()
    for src in sorted(run.instrument_sources):
        if src in legacy:
            continue
        for kind in KINDS:
            m = kind.source_re.match(src)
            if m:
                det = found.setdefault(m["det"], Detector(kind, m["det"]))
                det.sources[int(m["mod"])] = src
                break
        else:
            m = _OTHER_DETECTOR_RE.match(src)
            if m and ("image.data" in run[src].keys() or "data.adc" in run[src].keys()):
                unsupported.add(m["det"])
    return found, unsupported - set(found)


def select_detector(run, detector=None):
    """Pick the detector to convert: *detector* is a source name or prefix."""
    found, unsupported = find_detectors(run)
    supported = ", ".join(k.name for k in KINDS)
    if detector is None:
        if len(found) == 1:
            det = next(iter(found.values()))
        elif not found:
            hint = (f" The run has {', '.join(sorted(unsupported))}, which is not supported"
                    f" (supported: {supported})." if unsupported else "")
            raise DetectorNotFoundError(
                f"no supported detector ({supported}) in this run.{hint}"
                " Check the run directory (corrected data is under proc/)."
            )
        else:
            raise DetectorNotFoundError(
                f"the run has several detectors ({', '.join(sorted(found))}):"
                " choose one with --detector (Python: detector=...)"
            )
    else:
        det = None
        for name, cand in found.items():
            if detector == name or detector in cand.sources.values() \
                    or (detector.startswith(name) and "/" in detector) \
                    or name.startswith(detector):
                det = cand
                break
        if det is None:
            prefix = detector.split("/", 1)[0]
            if any(u.startswith(prefix) for u in unsupported):
                raise UnsupportedDetectorError(
                    f"detector {detector!r} is of a kind this converter does not"
                    f" support (supported: {supported})"
                )
            available = ", ".join(sorted(found)) or "none"
            raise DetectorNotFoundError(
                f"unknown detector {detector!r}: the run has {available}."
                " Pass one of these (or any of its source names) to --detector"
            )
    check_corrected(run, det)
    return det


def check_corrected(run, det):
    """Refuse raw data: NXmx files must hold corrected, calibrated frames."""
    src = det.sources[min(det.sources)]
    kd = run[src, det.kind.data_key]
    if det.kind is AGIPD_1M and kd.entry_shape[:1] == (2,):
        raise RawDataError(
            f"{src} holds raw AGIPD data (data and gain interleaved, shape"
            f" {kd.entry_shape}); convert the corrected run instead"
            " (the proc/ folder of the proposal, CORR-*.h5 files)"
        )
    if not np.issubdtype(kd.dtype, np.floating):
        raise RawDataError(
            f"{src} holds raw {det.kind.name} data ({kd.dtype}); convert the"
            " corrected run instead (the proc/ folder of the proposal, CORR-*.h5 files)"
        )
    expected = det.kind.module_shape
    shape = kd.entry_shape[-2:]
    if tuple(shape) != expected:
        raise UnsupportedDetectorError(
            f"{src} has frames of shape {tuple(shape)}, expected {expected} for {det.kind.name}"
        )
