"""``inspect_run``: what a run holds, for ``daas nxmx info``."""

import numpy as np

from .beam import find_xgm, xgm_sources
from .detectors import find_detectors
from .runs import open_run


def inspect_run(run):
    """Summarise detectors, trains, pulses and XGMs of a run (a dict)."""
    dc = open_run(run)
    found, unsupported = find_detectors(dc)
    detectors, preferred = [], {}
    for name, det in sorted(found.items()):
        preferred[name] = find_xgm(dc, det.instrument)
        src = det.sources[min(det.sources)]
        kd = dc[src, det.kind.data_key]
        counts = np.asarray(kd.data_counts(labelled=False))
        per_entry = kd.entry_shape[0] if det.kind.layout == "cells" else 1
        detectors.append({
            "name": name, "kind": det.kind.name, "modules": sorted(det.sources),
            "frame_shape": list(kd.entry_shape[-2:]), "dtype": str(kd.dtype),
            "frames_per_train_max": int(counts.max(initial=0)) * per_entry,
            "frames": int(counts.sum()) * per_entry,
        })
    tids = np.asarray(dc.train_ids)
    return {
        "trains": len(tids),
        "first_train": int(tids[0]) if len(tids) else None,
        "last_train": int(tids[-1]) if len(tids) else None,
        "detectors": detectors,
        "unsupported_detectors": sorted(unsupported),
        "xgm": xgm_sources(dc),
        "xgm_preferred": preferred,
    }
