"""``convert_run``: European XFEL run -> NXmx master file."""

import errno
import math
import numbers
import os
import tempfile
import warnings
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np

from ..oserrors import os_error_text
from . import nexus
from .beam import beam_for_frames
from .detectors import select_detector
from .errors import (ConversionCancelled, ConversionError, MissingMetadataError,
                     NoFramesError, OutputError)
from .frames import build_frame_table
from .geometry import image_layout, load_geometry
from .mask import NX_GAP, translate_mask
from .runs import open_run, run_metadata, select_trains, train_times

MODES = ("virtual", "copy")
#: ``compression=`` of ``mode="copy"``; the first is the default.
COMPRESSIONS = ("bitshuffle", "gzip")


class DefaultDistanceWarning(UserWarning):
    """No detector distance was given; a documented default is used."""


def check_output(output, overwrite):
    """Refuse outputs that cannot or must not be written, before any work."""
    output = Path(output)
    if output.is_dir():
        raise OutputError(f"{output} is a directory: give a file name such as {output / 'run.nxs'}")
    if output.exists() and not overwrite:
        raise OutputError(f"{output} exists: choose another name or pass --overwrite (overwrite=True)")
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write {output}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {output}: no write permission in {parent}; choose a folder you can write to")
    return output


def _number(name, value, unit, flag, minimum=0.0, strict=True):
    if value is None:
        return
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= minimum if strict else value < minimum):
        bound = f"{'>' if strict else '>='} {minimum:g}"
        raise ConversionError(f"{name} must be a number {bound} ({unit}), got {value!r}; e.g. {flag}")


def _check_arguments(mode, distance, photon_energy, min_pulse_energy, threads, compression):
    """Refuse bad arguments before any work (the boundary check)."""
    if mode not in MODES:
        raise ConversionError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if compression is not None:
        if compression not in COMPRESSIONS:
            raise ConversionError(
                f"compression must be one of {', '.join(COMPRESSIONS)}, not {compression!r}")
        if mode != "copy":
            raise ConversionError(
                "compression applies to the copied data: pass mode='copy' (--mode copy) with it,"
                " or leave it out (virtual data keep the run's own storage)")
    _number("distance", distance, "mm", "--distance 120")
    _number("photon_energy", photon_energy, "keV", "--photon-energy 9.3")
    _number("min_pulse_energy", min_pulse_energy, "µJ", "--min-pulse-energy 500", strict=False)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, numbers.Integral)
                                or threads < 1):
        raise ConversionError(f"threads must be a whole number >= 1, got {threads!r}; leave it out for the default")


def _umask():
    """The process umask, read without changing it where Linux allows
    (``os.umask`` sets it process-wide, racing other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _canceller(cancel):
    def check():
        if cancel is not None and cancel.is_set():
            raise ConversionCancelled("conversion cancelled; nothing was written")
    return check


def _static_mask(table):
    """NXmx pixel_mask from the first frame of each module, or None.

    EuXFEL masks are per frame; NXmx's static mask takes the first selected
    frame's bad-pixel flags (the per-frame masks stay in the run's files).
    Modules with no frames are gaps; a module without a mask has no flags.
    """
    mask = np.full((table.n_modules,) + tuple(table.module_shape), NX_GAP, np.uint32)
    found = False
    for m in table.modules:
        if not len(m.dst):
            continue
        mask[m.index] = 0
        if not m.mask_dataset:
            continue
        first = int(np.argmin(m.dst))
        with h5py.File(m.files[m.file_idx[first]], "r") as h5:
            if m.mask_dataset not in h5:
                continue
            ds = h5[m.mask_dataset]
            raw = ds[m.row[first]] if m.sub is None else ds[m.row[first], m.sub[first]]
        mask[m.index] = translate_mask(raw)
        found = True
    return mask if found else None


def _times(run, table):
    meta = run_metadata(run)
    ts = train_times(run, table.train_id[[0, -1]])
    out = {}
    if not np.isnat(ts).any():
        out["start_time"] = nexus.iso_utc(ts[0])
        out["end_time_estimated"] = nexus.iso_utc(ts[1])
        out["end_time"] = out["end_time_estimated"]  # observed: last train's timestamp
    else:
        def parse(key):
            v = meta.get(key)
            try:
                return nexus.iso_utc(datetime.strptime(str(v), "%Y%m%dT%H%M%S%z"))
            except (TypeError, ValueError):
                return None
        start, end = parse("creationDate"), parse("updateDate")
        if start is None:
            raise MissingMetadataError(
                "the run records neither train timestamps nor a creation date,"
                " so NXmx's start_time is unknown; use a run written with file format >= 1.0"
            )
        out["start_time"], out["end_time_estimated"] = start, end or start
    proposal, runno = meta.get("proposalNumber"), meta.get("runNumber")
    label = f"proposal {proposal}, run {runno}" if proposal is not None else "run"
    out["title"] = f"European XFEL {label}"
    out["sample"] = str(meta.get("sampleName") or meta.get("sample") or "unknown")
    return out


def convert_run(run, output, *, detector=None, geometry=None, mode="virtual", trains=None,
                min_pulse_energy=None, photon_energy=None, distance=None, overwrite=False,
                progress=None, cancel=None, threads=None, compression=None):
    """Convert a European XFEL run into an NXmx ("Gold Standard") master file.

    Parameters
    ----------
    run : str, Path or extra_data.DataCollection
        A run directory (corrected data, e.g. ``.../proc/r0042``) or an
        opened run.
    output : str or Path
        The ``.nxs``/``.h5`` file to write. Written under a temporary name in
        the same folder and renamed when complete.
    detector : str, optional
        Source name or prefix (``SPB_DET_AGIPD1M-1``); needed only when the
        run has several detectors.
    geometry : extra_geom geometry or path of a CrystFEL ``.geom`` file, optional
        Without it a documented default layout is used, with a warning.
    mode : "virtual" or "copy"
        "virtual": ``/entry/data/data`` maps the run's files (nothing is
        copied). "copy": a self-contained compressed copy (see *compression*).
    trains : slice, extra_data selector or list of train IDs, optional
        A slice selects by train index within the run.
    min_pulse_energy : float, optional
        Keep only frames whose XGM pulse energy is at least this (µJ).
    photon_energy : float, optional
        Photon energy (keV), instead of the XGM's wavelength.
    distance : float, optional
        Sample-detector distance (mm); default per detector, with a warning.
    overwrite : bool
        Replace an existing *output*.
    progress : callable(done, total), optional
    cancel : object with ``is_set()``, optional
        Setting it stops the conversion (``ConversionCancelled``).
    threads : int, optional
        Compression threads for ``mode="copy"`` (default: CPU count + 1).
    compression : "bitshuffle" or "gzip", optional
        For ``mode="copy"``. "bitshuffle" (default): bitshuffle/LZ4, fast
        and compact, but readers need the bitshuffle HDF5 plugin (Debian:
        ``hdf5-filter-plugin``; Python: ``import hdf5plugin``). "gzip":
        HDF5's built-in shuffle + deflate, which every HDF5 reads.

    Returns the path written. Raises :class:`ConversionError` subclasses
    for bad input; nothing is left at *output* on any error.

    Example::

        convert_run("/gpfs/exfel/exp/SPB/202301/p001234/proc/r0042", "r42.nxs",
                    geometry="agipd.geom", min_pulse_energy=500)
    """
    _check_arguments(mode, distance, photon_energy, min_pulse_energy, threads, compression)
    output = check_output(output, overwrite)
    check_cancel = _canceller(cancel)
    dc = select_trains(open_run(run), trains)
    det = select_detector(dc, detector)
    geom = load_geometry(geometry, det.kind, det.n_modules)
    if distance is None:
        distance = det.kind.default_distance_mm
        warnings.warn(f"no detector distance given: using {distance} mm; pass --distance MM",
                      DefaultDistanceWarning, stacklevel=2)
    table = build_frame_table(dc, det)
    if not len(table):
        raise NoFramesError(f"{det.name} recorded no frames in the selected trains; select other trains")
    beam = beam_for_frames(dc, table, det.instrument, photon_energy)
    if min_pulse_energy is not None:
        if beam.pulse_energy_uJ is None:
            raise MissingMetadataError(
                "min_pulse_energy needs XGM pulse energies, but the run has no XGM;"
                " leave out --min-pulse-energy")
        with np.errstate(invalid="ignore"):
            keep = beam.pulse_energy_uJ >= min_pulse_energy
        if not keep.any():
            best = np.nanmax(beam.pulse_energy_uJ) if np.isfinite(beam.pulse_energy_uJ).any() else float("nan")
            raise NoFramesError(
                f"no frame has an XGM pulse energy >= {min_pulse_energy} µJ (highest: {best:.4g} µJ);"
                " lower --min-pulse-energy")
        table.select(keep)
        beam.select(keep)
    check_cancel()
    meta = _times(dc, table)
    mask = _static_mask(table)

    try:
        fd, tmp_name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".part")
    except OSError as e:
        raise OutputError(
            f"cannot create a file in {output.parent} ({e.strerror or e}); check its permissions,"
            " free space and quota, or write elsewhere") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            _write(tmp, output, mode, det, geom, distance, mask, table, beam, meta,
                   progress, check_cancel, threads, compression or COMPRESSIONS[0])
            _check_written(tmp, len(table))
            # mkstemp made it 0600; give it the mode a plain open() would have.
            os.chmod(tmp, 0o666 & ~_umask())
            _publish(tmp, output, overwrite)
        except OSError as e:  # disk full, quota, I/O error on the output's device
            raise OutputError(
                f"writing {output} failed ({os_error_text(e)}); check the free space and quota"
                f" in {output.parent}, or write elsewhere. Nothing was written") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return output


def _write(tmp, output, mode, det, geom, distance, mask, table, beam, meta,
           progress, check_cancel, threads, compression):
    with h5py.File(tmp, "w", libver=("v110", "latest")) as f:
        nexus.write_root_attrs(f, output)
        entry = nexus.write_entry(f, meta)
        inst = nexus.write_instrument(entry, det.instrument)
        nexus.write_beam(inst, beam, len(table))
        d = nexus.write_detector(inst, det, geom, distance, mask, table.dtype)
        nexus.write_detector_group(inst)
        data_group = nexus.write_data_group(entry, table)
        layout = image_layout(geom)
        if mode == "virtual":
            from .vds import write_virtual
            data = write_virtual(data_group, "data", table, layout, progress, check_cancel)
        else:
            from .compressed import write_copy
            data = write_copy(data_group, "data", table, layout, progress, check_cancel, threads, compression)
        d["data"] = data


def _publish(tmp, output, overwrite):
    """Move the finished *tmp* to *output*. Without *overwrite* a hard link
    claims the name atomically, so a file that appeared meanwhile is kept."""
    if overwrite:
        os.replace(tmp, output)
        return
    try:
        os.link(tmp, output)
    except FileExistsError:
        raise OutputError(f"{output} appeared during the conversion; pass --overwrite to replace it") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # A filesystem without hard links: the narrower check-then-rename.
        if output.exists():
            raise OutputError(f"{output} appeared during the conversion; pass --overwrite to replace it") from None
        os.replace(tmp, output)
        return
    tmp.unlink()


def _check_written(path, n_frames):
    with h5py.File(path, "r") as f:
        data = f["/entry/data/data"]
        if data.shape[0] != n_frames:
            raise ConversionError(f"internal error: wrote {data.shape[0]} frames, expected {n_frames}")
        data[0, :1]  # the first frame's mapping resolves
