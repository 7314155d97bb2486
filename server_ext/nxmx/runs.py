"""Opening runs and reading their metadata, with errors a user can act on."""

import warnings
from pathlib import Path

import numpy as np

from .errors import CorruptRunError, NoFramesError, NotARunError


def open_run(run):
    """Return a DataCollection for a run directory path (or pass one through)."""
    if not isinstance(run, (str, Path)):
        return run
    from extra_data import RunDirectory

    path = Path(run)
    if not path.is_dir():
        raise NotARunError(
            f"{path} is not a directory: give a European XFEL run directory,"
            " e.g. /gpfs/exfel/exp/SPB/202301/p001234/proc/r0042"
        )
    h5files = sorted(p.resolve() for p in path.glob("*.h5"))
    if not h5files:
        raise NotARunError(
            f"{path} holds no .h5 files, so it is not a run directory; give the"
            " folder with the RAW-/CORR-*.h5 files of one run (e.g. .../proc/r0042)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dc = RunDirectory(str(path))
    except FileNotFoundError as e:
        raise NotARunError(f"{path} is not a run directory ({e})") from None
    except Exception as e:
        raise CorruptRunError(
            f"cannot open the run in {path} ({type(e).__name__}: {e}); check that"
            " its files are complete (a truncated copy fails like this)"
        ) from None
    opened = {Path(f.filename).resolve() for f in dc.files}
    skipped = [p.name for p in h5files if p not in opened]
    if skipped:
        raise CorruptRunError(
            f"cannot read {', '.join(skipped)} in {path}: truncated or corrupt HDF5;"
            " copy the file(s) again from the facility, or move them out of the run directory"
        )
    return dc


def select_trains(run, trains):
    """Apply a train selection: a slice of train indices, an ``extra_data``
    ``by_id``/``by_index`` selector, or a list of train IDs."""
    if trains is None:
        sel = run
    else:
        from extra_data import by_id

        if isinstance(trains, (list, tuple, np.ndarray)):
            trains = by_id[np.asarray(trains, dtype=np.uint64)]
        try:
            sel = run.select_trains(trains)
        except Exception as e:
            raise NoFramesError(f"invalid train selection {trains!r}: {e}") from None
    if not len(sel.train_ids):
        raise NoFramesError(
            f"the train selection {trains!r} leaves no trains (the run has"
            f" {len(run.train_ids)} trains, indices 0 to {len(run.train_ids) - 1})"
        )
    return sel


def run_metadata(run):
    try:
        return dict(run.run_metadata())
    except Exception:
        return {}


def train_times(run, train_ids):
    """Timestamps (datetime64[ns], NaT where unknown) of the given trains."""
    try:
        ts = np.asarray(run.train_timestamps())
    except Exception:
        return np.full(len(train_ids), np.datetime64("NaT"), "datetime64[ns]")
    all_tids = np.asarray(run.train_ids)
    pos = np.clip(np.searchsorted(all_tids, train_ids), 0, len(all_tids) - 1)
    out = ts[pos]
    out[all_tids[pos] != train_ids] = np.datetime64("NaT")
    return out
