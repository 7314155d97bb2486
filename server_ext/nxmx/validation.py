"""``validate(path)``: is a file a compliant NXmx file? Checked by
independent readers:

* ``structure``: this package's own checks (dependency chains end in ".",
  module hyperslabs fit the data, unit vectors, uint32 mask, readable data);
* ``nxmx``: the reader dxtbx uses loads every item dxtbx touches;
* ``pynxtools``: NXDL validation against NXmx;
* ``nexusformat``: ``nxvalidate`` against NXmx;
* ``dxtbx``: the installed DIALS's own reader (in DIALS' interpreter, see
  ``server_ext.nxmx.dials``) builds its models and reads the first image;
  what it read is in ``report.read["dxtbx"]``.

Only documented false positives are dropped, by name (see
``KNOWN_FALSE_POSITIVES``); they are kept in ``report.ignored``. A checker
that is not installed is listed in ``report.unavailable`` with how to get
it, never reported as an error of the file.
"""

import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np

CHECKERS = ("structure", "nxmx", "pynxtools", "nexusformat", "dxtbx")

#: How to get each checker that can be missing.
INSTALL_HINTS = {
    "nxmx": "pip install nxmx (a dependency of panosc-daas: reinstall it)",
    "pynxtools": "pip install pynxtools (a dependency of panosc-daas: reinstall it)",
    "nexusformat": "pip install nexusformat (a dependency of panosc-daas: reinstall it)",
}


class CheckerUnavailable(Exception):
    """A checker's software is not installed; the message says how to get it."""

# pynxtools reads the names pixel_mask and module_offset as a reserved
# suffix (_mask, _offset) attached to a field "pixel" / "module", although
# NXmx defines both names itself.
KNOWN_FALSE_POSITIVES = (
    ("pynxtools", re.compile(r"Reserved suffix '_mask' was used in \S*/pixel_mask\b")),
    ("pynxtools", re.compile(r"Reserved suffix '_offset' was used in \S*/module_offset\b")),
)


@dataclass(frozen=True)
class Finding:
    """One problem found by one checker."""

    checker: str
    severity: str  # "error" or "warning"
    message: str

    def __str__(self):
        return f"[{self.checker}] {self.severity}: {self.message}"


@dataclass
class ValidationReport:
    """Result of :func:`validate`: ``ok`` is true when no checker found an error."""

    path: str
    findings: list = field(default_factory=list)
    ignored: list = field(default_factory=list)
    checkers: tuple = CHECKERS
    #: checker -> how to install it, for checkers that could not run here
    unavailable: dict = field(default_factory=dict)
    #: checker -> what it read (dxtbx: panels, image size, wavelength...)
    read: dict = field(default_factory=dict)

    @property
    def checked_by(self):
        """The checkers that ran."""
        return tuple(c for c in self.checkers if c not in self.unavailable)

    @property
    def ok(self):
        return not self.errors

    @property
    def errors(self):
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self):
        return [f for f in self.findings if f.severity == "warning"]

    def to_dict(self):
        """JSON-ready summary (used by the REST API)."""
        return {
            "path": self.path, "ok": self.ok, "checkers": list(self.checkers),
            "checked_by": list(self.checked_by), "unavailable": dict(self.unavailable),
            "read": dict(self.read),
            "findings": [asdict(f) for f in self.findings],
            "ignored": [asdict(f) for f in self.ignored],
        }

    def __str__(self):
        head = f"{self.path}: {'compliant NXmx' if self.ok else 'NOT compliant'}"
        head += f" ({len(self.errors)} errors, {len(self.warnings)} warnings;"
        head += f" checked by {', '.join(self.checked_by) or 'nothing'})"
        lines = [head] + [f"  {f}" for f in self.findings]
        lines += [f"  [{name}] read: {text}" for name, text in self.read_lines()]
        lines += [f"  [{name}] not checked: {hint}" for name, hint in self.unavailable.items()]
        return "\n".join(lines)

    def read_lines(self):
        """(checker, one-line description) of what each reader read."""
        out = []
        info = self.read.get("dxtbx")
        if info:
            size = "x".join(map(str, info["image_size"]))
            out.append(("dxtbx", f"{info['format_class']}: {info['panels']} panels of {size} px"
                                  f" (fast x slow), {info['images']} {'still' if info['still'] else 'rotation'}"
                                  f" images, wavelength {info['wavelength_A']:.5g} Å"))
        return out


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def _capturing(logger_name, level):
    logger = logging.getLogger(logger_name)
    handler = _Capture()
    old = (logger.level, logger.propagate, list(logger.handlers))
    logger.handlers = [handler]
    logger.setLevel(level)
    logger.propagate = False
    return logger, handler, old


def _restore(logger, old):
    logger.setLevel(old[0])
    logger.propagate = old[1]
    logger.handlers = old[2]


def validate(path, checkers=CHECKERS):
    """Validate the NXmx file at *path*; returns a :class:`ValidationReport`."""
    path = Path(path)
    report = ValidationReport(str(path), checkers=tuple(checkers))
    if not path.is_file():
        report.findings.append(Finding("structure", "error", f"{path} does not exist or is not a file"))
        return report
    if not h5py.is_hdf5(path):
        report.findings.append(Finding("structure", "error", f"{path} is not an HDF5 file"))
        return report
    runners = {"structure": _check_structure, "nxmx": _check_nxmx,
               "pynxtools": _check_pynxtools, "nexusformat": _check_nexusformat,
               "dxtbx": lambda p: _check_dxtbx(p, report)}
    unknown = [c for c in checkers if c not in runners]
    if unknown:
        raise ValueError(f"unknown checker(s) {', '.join(unknown)}; choose from {', '.join(CHECKERS)}")
    for name in checkers:
        try:
            found = runners[name](path)
        except CheckerUnavailable as e:
            report.unavailable[name] = str(e)
            continue
        except ModuleNotFoundError as e:
            if name in INSTALL_HINTS and _is_missing(e, name):
                report.unavailable[name] = f"{name} is not installed: {INSTALL_HINTS[name]}"
                continue
            found = [Finding(name, "error", f"checker failed: {type(e).__name__}: {e}")]
        except Exception as e:  # a crashing reader is itself a finding
            found = [Finding(name, "error", f"checker failed: {type(e).__name__}: {e}")]
        for f in found:
            if any(c == f.checker and rx.search(f.message) for c, rx in KNOWN_FALSE_POSITIVES):
                report.ignored.append(f)
            else:
                report.findings.append(f)
    return report


def _is_missing(err, package):
    """True when *err* says *package* itself (not something it imports) is absent."""
    return (err.name or "").split(".")[0] == package


# -- structure ---------------------------------------------------------------

def _attr_str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def _check_structure(path):
    out = []
    err = lambda msg: out.append(Finding("structure", "error", msg))  # noqa: E731
    with h5py.File(path, "r") as f:
        entries = [k for k, g in f.items() if _attr_str(g.attrs.get("NX_class", "")) == "NXentry"]
        if not entries:
            err("no NXentry group at the top level")
            return out
        for name in entries:
            entry = f[name]
            if "definition" not in entry or _attr_str(entry["definition"][()]) != "NXmx":
                err(f"/{name}/definition is not 'NXmx'")
                continue
            if entry["definition"].shape != ():
                err(f"/{name}/definition must be a scalar")
            data = _signal(entry, err)
            f.visititems(lambda p, o: _check_node(f, p, o, data, err))
    return out


def _signal(entry, err):
    import hdf5plugin  # noqa: F401  (registers bitshuffle & co. for copy-mode files)

    groups = [g for g in entry.values()
              if isinstance(g, h5py.Group) and _attr_str(g.attrs.get("NX_class", "")) == "NXdata"]
    if not groups:
        err(f"{entry.name} has no NXdata group")
        return None
    g = groups[0]
    sig = _attr_str(g.attrs.get("signal", ""))
    if sig not in g:
        err(f"{g.name}/@signal names {sig!r}, which is not in the group")
        return None
    data = g[sig]
    if data.ndim not in (3, 4):  # NXmx allows a module axis; dxtbx < 3.16 reads rank 3 only
        err(f"{data.name} has rank {data.ndim}; NXmx needs (frames, [module,] slow, fast)")
    try:
        if data.shape[0]:
            data[0, ...] if data.ndim == 3 else data[0, 0]
    except OSError as e:
        err(f"{data.name}: the first frame cannot be read ({e})")
    return data


def _check_node(f, path, obj, data, err):
    if not isinstance(obj, h5py.Dataset):
        if _attr_str(obj.attrs.get("NX_class", "")) == "NXdetector_module":
            _check_module(obj, data, err)
        return
    dep = obj.attrs.get("depends_on")
    if dep is not None or path.endswith("depends_on"):
        start = _attr_str(dep) if dep is not None else _attr_str(obj[()])
        _check_chain(f, obj.name, start, err)
    if obj.name.endswith("/pixel_mask") and obj.dtype != np.uint32:
        err(f"{obj.name} is {obj.dtype}, NXmx's pixel_mask is uint32")
    if "transformation_type" in obj.attrs:
        vec = np.asarray(obj.attrs.get("vector", []), dtype=float)
        if vec.shape != (3,) or not np.isclose(np.linalg.norm(vec), 1.0):
            err(f"{obj.name}/@vector must be a unit 3-vector, got {vec}")
        if "units" not in obj.attrs:
            err(f"{obj.name} has no @units")


def _check_chain(f, name, start, err):
    seen = set()
    cur = start
    while cur != ".":
        if not cur.startswith("/"):
            err(f"{name}: depends_on {cur!r} is not an absolute path")
            return
        if cur in seen:
            err(f"{name}: depends_on chain loops at {cur}")
            return
        seen.add(cur)
        if cur not in f:
            err(f"{name}: depends_on target {cur} does not exist")
            return
        nxt = f[cur].attrs.get("depends_on")
        if nxt is None:
            err(f"{name}: chain stops at {cur}, which has no @depends_on (must end in '.')")
            return
        cur = _attr_str(nxt)


def _check_module(mod, data, err):
    for key in ("data_origin", "data_size", "fast_pixel_direction", "slow_pixel_direction"):
        if key not in mod:
            err(f"{mod.name} lacks {key}")
            return
    origin, size = mod["data_origin"][()], mod["data_size"][()]
    if not (np.issubdtype(origin.dtype, np.integer) and np.issubdtype(size.dtype, np.integer)):
        err(f"{mod.name}: data_origin/data_size must be integers")
        return
    if data is not None:
        image = data.shape[1:]
        if len(origin) != len(image) or np.any(origin < 0) or np.any(origin + size > np.array(image)):
            err(f"{mod.name}: hyperslab {origin.tolist()}+{size.tolist()} lies outside the image {image}")


# -- nxmx (the reader dxtbx uses) --------------------------------------------

def _check_nxmx(path):
    import nxmx

    out = []
    err = lambda msg: out.append(Finding("nxmx", "error", msg))  # noqa: E731
    with h5py.File(path, "r") as f:
        entries = nxmx.NXmx(f).entries
        if not entries:
            return [Finding("nxmx", "error", "nxmx finds no NXmx entry")]
        for e in entries:
            for label, get in (("definition", lambda: e.definition), ("start_time", lambda: e.start_time),
                               ("end_time_estimated", lambda: e.end_time_estimated),
                               ("source.name", lambda: e.source.name)):
                try:
                    if get() is None:
                        err(f"{label} is missing")
                except Exception as ex:
                    err(f"{label}: {type(ex).__name__}: {ex}")
            for s in e.samples:
                s.name, s.depends_on
            if not e.instruments:
                err("no NXinstrument")
            for inst in e.instruments:
                inst.name
                if not inst.beams:
                    err(f"{inst.path}: no NXbeam")
                for b in inst.beams:
                    b.incident_wavelength.to("angstrom")
                    b.total_flux
                if not inst.detectors:
                    err(f"{inst.path}: no NXdetector")
                for d in inst.detectors:
                    _nxmx_detector(nxmx, d, err)
            for data in e.data:
                if data.signal is None or data.signal not in data:
                    err(f"{data.path}: no signal dataset")
    return out


def _nxmx_detector(nxmx, d, err):
    (d.sensor_material, d.sensor_thickness.to("mm"), d.description, d.saturation_value,
     d.underload_value, d.pixel_mask, d.bit_depth_readout, d.frame_time, d.count_time)
    if d.distance is not None:
        d.distance.to("mm")
    if d.depends_on is not None:
        nxmx.get_cumulative_transformation(nxmx.get_dependency_chain(d.depends_on))
    if not d.modules:
        err(f"{d.path}: no NXdetector_module")
    for m in d.modules:
        m.data_origin, m.data_size
        for axis in (m.fast_pixel_direction, m.slow_pixel_direction):
            axis[()].to("mm")
            chain = nxmx.get_dependency_chain(axis)
            nxmx.get_cumulative_transformation(chain)


# -- pynxtools ----------------------------------------------------------------

def _check_pynxtools(path):
    from pynxtools.dataconverter import helpers
    from pynxtools.dataconverter.validation import validate_hdf_group_against

    logger, handler, old = _capturing("pynxtools", logging.INFO)
    try:
        helpers.collector.clear()
        with h5py.File(path, "r") as f:
            for name, g in f.items():
                if _attr_str(g.attrs.get("NX_class", "")) != "NXentry" or "definition" not in g:
                    continue
                appdef = _attr_str(g["definition"][()])
                validate_hdf_group_against(appdef, g, str(path))
        problems = set(helpers.collector.get())
    finally:
        _restore(logger, old)
        helpers.collector.clear()
    # pynxtools reports each departure from the application definition as a
    # warning record: all of them are errors of the file.
    out = [Finding("pynxtools", "error", r.getMessage())
           for r in handler.records if r.levelno >= logging.WARNING]
    if problems and not out:  # problems the logger did not describe
        out = [Finding("pynxtools", "error", p) for p in sorted(problems)]
    return out


# -- nexusformat --------------------------------------------------------------

def _check_nexusformat(path):
    from nexusformat.nexus import validate as nxv

    logger, handler, old = _capturing(nxv.logger.name, logging.WARNING)
    try:
        counts = nxv.validate_application(str(path))
    finally:
        _restore(logger, old)
    # nexusformat logs a context line ("Field: /entry/...") at CRITICAL
    # before that item's warnings and errors.
    out, context = [], ""
    for r in handler.records:
        msg = r.getMessage().strip()
        if r.levelno >= logging.CRITICAL:
            if msg.startswith(("Group:", "Field:", "Attribute:")) or msg.startswith("/"):
                context = msg
            continue
        severity = "error" if r.levelno >= logging.ERROR else "warning"
        finding = Finding("nexusformat", severity, f"{context}: {msg}" if context else msg)
        if finding not in out:
            out.append(finding)
    n_errors = counts[1] if counts else 1
    if n_errors and not any(f.severity == "error" for f in out):
        out.append(Finding("nexusformat", "error", f"nxvalidate counted {n_errors} errors"))
    return out


# -- dxtbx (the installed DIALS) ----------------------------------------------

def _check_dxtbx(path, report):
    from . import dials

    if not dials.dials_available():
        raise CheckerUnavailable(dials.install_hint())
    try:
        reading = dials.read_with_dxtbx(path)
    except dials.DialsError as e:
        if isinstance(e, dials.DialsTimeoutError) or dials.BITSHUFFLE_HINT in str(e):
            # Not the file's fault: DIALS was slow, or its HDF5 lacks a filter plugin.
            return [Finding("dxtbx", "warning", str(e))]
        return [Finding("dxtbx", "error", str(e))]
    report.read["dxtbx"] = reading.to_dict()
    out = []
    if reading.images < 1:
        out.append(Finding("dxtbx", "error", "dxtbx finds no images in the file"))
    if reading.format_class != "FormatNXmx":
        out.append(Finding("dxtbx", "warning",
                           f"dxtbx reads the file with {reading.format_class}, not FormatNXmx"))
    return out
