"""Writes the NXmx tree (everything but the pixel data) into an open file."""

from datetime import datetime, timezone

import h5py
import numpy as np

from .geometry import image_layout, tiles

ENTRY = "/entry"
INSTRUMENT = "/entry/instrument"
DETECTOR_NAME = "ELE_D0"
DETECTOR = f"{INSTRUMENT}/{DETECTOR_NAME}"
ARM = f"{DETECTOR}/transformations/AXIS_D0"

INSTRUMENT_NAMES = {"SPB": "SPB/SFX", "SFX": "SPB/SFX"}


def _group(parent, name, nx_class):
    g = parent.require_group(name)
    g.attrs["NX_class"] = nx_class
    return g


def _text(group, name, value, **attrs):
    ds = group.create_dataset(name, data=str(value), dtype=h5py.string_dtype())
    for k, v in attrs.items():
        ds.attrs[k] = v
    return ds


def _number(group, name, value, units=None, **kw):
    ds = group.create_dataset(name, data=value, **kw)
    if units is not None:
        ds.attrs["units"] = units
    return ds


def iso_utc(t):
    """Extended ISO 8601 in UTC with a ``Z`` suffix."""
    if isinstance(t, np.datetime64):
        t = datetime.fromtimestamp(t.astype("datetime64[us]").astype(np.int64) / 1e6, timezone.utc)
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def write_root_attrs(f, path):
    f.attrs["NX_class"] = "NXroot"
    f.attrs["default"] = "entry"
    f.attrs["file_name"] = str(path)
    f.attrs["file_time"] = iso_utc(datetime.now(timezone.utc))
    f.attrs["creator"] = "panosc-daas server_ext.nxmx"
    f.attrs["HDF5_Version"] = h5py.version.hdf5_version
    f.attrs["h5py_version"] = h5py.version.version


def write_entry(f, meta):
    """/entry with its times, title, source and sample."""
    entry = _group(f, "entry", "NXentry")
    entry.attrs["version"] = "1.0"
    entry.attrs["default"] = "data"
    _text(entry, "definition", "NXmx")
    _text(entry, "title", meta["title"])
    _text(entry, "start_time", meta["start_time"])
    _text(entry, "end_time_estimated", meta["end_time_estimated"])
    if meta.get("end_time"):
        _text(entry, "end_time", meta["end_time"])

    source = _group(entry, "source", "NXsource")
    _text(source, "name", "European XFEL", short_name="EuXFEL")
    _text(source, "type", "Free-Electron Laser")
    _text(source, "probe", "x-ray")

    sample = _group(entry, "sample", "NXsample")
    _text(sample, "name", meta["sample"])
    _text(sample, "depends_on", ".")  # still shots: no goniometer
    return entry


def write_instrument(entry, instrument_acronym):
    inst = _group(entry, "instrument", "NXinstrument")
    short = INSTRUMENT_NAMES.get(instrument_acronym, instrument_acronym)
    _text(inst, "name", f"European XFEL {short}", short_name=short)
    return inst


def write_beam(inst, beam, n_frames):
    """NXbeam: per-frame wavelength, flux from the XGM pulse energies."""
    g = _group(inst, "beam", "NXbeam")
    _number(g, "incident_wavelength", beam.wavelength_A.astype(np.float64), "angstrom")
    photons = beam.photons_per_pulse
    if photons is not None:
        _number(g, "total_flux_integrated", photons.astype(np.float64), "")
        _number(g, "total_flux", beam.total_flux_Hz.astype(np.float64), "Hz")
        g.attrs["flux"] = "total_flux_integrated"
    return g


def write_detector(inst, det, geom, distance_mm, pixel_mask=None, data_dtype=np.float32):
    """NXdetector with its static properties and one module per ASIC tile."""
    kind = det.kind
    d = _group(inst, DETECTOR_NAME, "NXdetector")
    _text(d, "depends_on", ARM)
    _text(d, "description", f"{kind.description} from {det.name}")
    _text(d, "type", "pixel")
    _text(d, "sensor_material", kind.sensor_material)
    _number(d, "sensor_thickness", float(kind.sensor_thickness_mm), "mm")
    _number(d, "distance", float(distance_mm), "mm")
    _number(d, "distance_derived", False)
    _number(d, "count_time", float(kind.count_time_s), "s")
    _number(d, "frame_time", float(kind.frame_time_s), "s")
    _number(d, "saturation_value", np.int64(kind.saturation_value))
    _number(d, "underload_value", np.int64(kind.underload_value))
    if np.issubdtype(np.dtype(data_dtype), np.integer):
        # Readers (dxtbx) take 2**bits - 1 and 2**bits - 2 as overload flags:
        # true of integer ADC counts, not of corrected (float) values, where
        # they would turn real pixel values into -1/-2.
        _number(d, "bit_depth_readout", np.int32(kind.bit_depth_readout))
    # extra_geom layouts are centred on the beam: it meets the detector
    # plane at its origin.
    _number(d, "beam_center_x", 0.0, "mm")
    _number(d, "beam_center_y", 0.0, "mm")
    layout = image_layout(geom)
    if pixel_mask is not None:
        # 2-D like the data's image: dxtbx < 3.16 ignores a mask of other rank.
        image = layout.to_image(pixel_mask.astype(np.uint32))
        _number(d, "pixel_mask", image, compression="gzip", compression_opts=4,
                chunks=(image.shape[0] // layout.n_modules, image.shape[1]))
        _number(d, "pixel_mask_applied", False)

    tr = _group(d, "transformations", "NXtransformations")
    arm = _number(tr, "AXIS_D0", float(distance_mm), "mm")
    arm.attrs["transformation_type"] = "translation"
    arm.attrs["vector"] = np.array([0.0, 0.0, 1.0])
    arm.attrs["offset"] = np.zeros(3)
    arm.attrs["offset_units"] = "mm"
    arm.attrs["depends_on"] = "."
    arm.attrs["equipment_component"] = "detector_arm"

    for i, t in enumerate(tiles(geom)):
        _write_module(d, t, layout.row(i), layout.tile_shape)
    return d


def _unit(v):
    n = np.linalg.norm(v)
    return v / n, n


def _write_module(d, t, row0, tile_shape):
    """One ASIC tile: a full-width block of rows of the image from *row0*
    (see ``geometry.ImageLayout``)."""
    name = f"module_{t.module:02d}_asic_{t.tile:02d}"
    mod = _group(d, name, "NXdetector_module")
    _number(mod, "data_origin", np.array([row0, 0], dtype=np.int32))
    _number(mod, "data_size", np.array(tile_shape, dtype=np.int32))
    _number(mod, "data_stride", np.array([1, 1], dtype=np.int32))

    path = f"{DETECTOR}/{name}"
    if np.linalg.norm(t.corner_mm) > 0:
        direction, length = _unit(t.corner_mm)
    else:
        direction, length = np.array([1.0, 0.0, 0.0]), 0.0
    off = _number(mod, "module_offset", float(length), "mm")
    _transformation(off, direction, ARM)
    for field, vec in (("fast_pixel_direction", t.fs_vec_mm), ("slow_pixel_direction", t.ss_vec_mm)):
        direction, size = _unit(vec)
        ds = _number(mod, field, float(size), "mm")
        _transformation(ds, direction, f"{path}/module_offset")


def _transformation(ds, vector, depends_on):
    ds.attrs["transformation_type"] = "translation"
    ds.attrs["vector"] = np.asarray(vector, dtype=np.float64)
    ds.attrs["offset"] = np.zeros(3)
    ds.attrs["offset_units"] = "mm"
    ds.attrs["depends_on"] = depends_on


def write_detector_group(inst):
    g = _group(inst, "detector_group", "NXdetector_group")
    g.create_dataset("group_names", data=[DETECTOR_NAME], dtype=h5py.string_dtype())
    g.create_dataset("group_index", data=np.array([1], dtype=np.int32))
    g.create_dataset("group_parent", data=np.array([-1], dtype=np.int32))


def write_data_group(entry, table):
    """/entry/data with per-frame labels; the caller adds ``data`` itself."""
    g = _group(entry, "data", "NXdata")
    g.attrs["signal"] = "data"
    g.create_dataset("train_id", data=table.train_id.astype(np.uint64))
    g.create_dataset("pulse_id", data=table.pulse_id.astype(np.uint64))
    g.create_dataset("cell_id", data=table.cell_id.astype(np.uint16))
    return g
