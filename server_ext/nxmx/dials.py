"""Read and index NXmx files with an installed DIALS, in its own interpreter.

DIALS and dxtbx are not on PyPI; Debian packages them (``apt-get install
dials python3-dials``: DIALS 3.12, for the system ``/usr/bin/python3``,
which needs numpy < 2). They never share this environment: every call here
runs DIALS' programs or ``dials_probe.py`` in a subprocess, with a time
limit, and reads back what they wrote.

    from server_ext.nxmx import dials

    if dials.dials_available():
        print(dials.read_with_dxtbx("r0029.nxs"))       # panels, image size, wavelength
        result = dials.find_and_index("r0029.nxs", "dials-r0029",
                                      unit_cell=(79.1, 79.1, 37.9, 90, 90, 90),
                                      space_group="P43212")
        print(result)                                   # images, spots, indexed, cell
    else:
        print(dials.install_hint())

``DAAS_DIALS_PYTHON`` names another interpreter with DIALS (e.g. a conda
environment's ``bin/python``); its ``dials.*`` programs are taken from the
same folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .errors import DialsError, DialsTimeoutError, DialsUnavailableError

__all__ = ["dials_available", "install_hint", "dials_python", "read_with_dxtbx", "find_and_index",
           "DxtbxReading", "Panel", "IndexingSummary", "IndexedImage", "Spot",
           "DialsError", "DialsUnavailableError", "DialsTimeoutError"]

PYTHON_ENV = "DAAS_DIALS_PYTHON"
DEFAULT_PYTHON = "/usr/bin/python3"
#: Seconds for ``dials_available``'s import check.
CHECK_TIMEOUT_S = 120
#: Seconds for dxtbx to read a file's models (``read_with_dxtbx``).
READ_TIMEOUT_S = 300
#: Seconds for each DIALS program of ``find_and_index``.
STEP_TIMEOUT_S = 1800
#: Run as ``python -I dials_probe.py``: isolated, so this folder (whose
#: dials.py would shadow DIALS' own package) is not on its path.
PROBE = Path(__file__).with_name("dials_probe.py")

#: DIALS' HDF5 could not decode the data for want of a filter plugin: the
#: bitshuffle filter is missing, or HDF5_PLUGIN_PATH names no folder.
_BITSHUFFLE_RE = re.compile(r"bitshuffle|filter.{0,20}32008|can't open directory", re.IGNORECASE)
BITSHUFFLE_HINT = (
    "the file's data are bitshuffle/LZ4 compressed (daas nxmx convert --mode copy) and this DIALS's"
    " HDF5 has no bitshuffle filter: install it (Debian: apt-get install bitshuffle"
    " hdf5-filter-plugin), or set HDF5_PLUGIN_PATH to hdf5plugin's plugins folder"
    " (python -c 'import hdf5plugin; print(hdf5plugin.PLUGIN_PATH)'), or convert with"
    " --compression gzip, which every HDF5 reads")


def dials_python() -> str:
    """The interpreter DIALS runs in: ``$DAAS_DIALS_PYTHON`` or ``/usr/bin/python3``."""
    return os.environ.get(PYTHON_ENV) or DEFAULT_PYTHON


def install_hint() -> str:
    """How to get DIALS where :func:`dials_available` is false."""
    return (
        "DIALS is not installed for " + dials_python() + ". On Debian/Ubuntu: sudo apt-get install"
        " dials python3-dials hdf5-filter-plugin bitshuffle (or `daas setup` as root). Elsewhere:"
        " conda install -c conda-forge dials, then set DAAS_DIALS_PYTHON to that environment's"
        " bin/python")


#: The value TensorFlow's Keras modules write into ``os.environ`` when imported
#: (ZDI-CAN-25480): their own h5py then loads no plugin. Any process that has
#: imported TensorFlow (a kernel, a Dask worker that trained a classifier)
#: passes it on to every program it starts.
PLUGINS_DISABLED = "disable"


def _environment(extra_path=None):
    """The environment for DIALS' interpreter: this venv's variables removed,
    so it imports its own packages only, and no ``HDF5_PLUGIN_PATH=disable``
    inherited from TensorFlow, with which DIALS' HDF5 decodes no compressed
    (bitshuffle) data: it looks in its default plugin folder instead."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    if env.get("HDF5_PLUGIN_PATH") == PLUGINS_DISABLED:
        del env["HDF5_PLUGIN_PATH"]
    if extra_path:
        env["PYTHONPATH"] = str(extra_path)
    return env


@lru_cache(maxsize=4)
def _available(python: str) -> bool:
    if not Path(python).is_file():
        return False
    try:
        r = subprocess.run([python, "-c", "import dxtbx.format.FormatNXmx, dials.command_line.find_spots"],
                           env=_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=CHECK_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def dials_available() -> bool:
    """True when :func:`dials_python` imports dxtbx and DIALS (checked once)."""
    return _available(dials_python())


def _require():
    if not dials_available():
        raise DialsUnavailableError(install_hint())
    return dials_python()


def _program(name):
    """A DIALS program (``dials.import``...) beside DIALS' interpreter, or on PATH."""
    beside = Path(dials_python()).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise DialsUnavailableError(f"{name} not found. {install_hint()}")
    return found


def _tail(text, lines=6):
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def run_dials(cmd, cwd, timeout, what, extra_path=None):
    """Run *cmd* in *cwd*, stopping it (and its children) after *timeout* s.

    Returns the combined output; a failure is a :class:`DialsError` that
    quotes its last lines, a timeout a :class:`DialsTimeoutError`.
    """
    log = Path(cwd) / f".{Path(cmd[0]).name}.out"
    with open(log, "w+b") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=_environment(extra_path), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout)
        except BaseException as e:  # timeout, Ctrl-C: stop the whole group
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(30)
            if isinstance(e, subprocess.TimeoutExpired):
                raise DialsTimeoutError(
                    f"{what} did not finish within {timeout:.0f} s and was stopped; give it"
                    " more time (timeout=) or fewer images (convert fewer trains)") from None
            raise
        out.seek(0)
        text = out.read().decode(errors="replace")
    if rc:
        hint = f" ({BITSHUFFLE_HINT})" if _BITSHUFFLE_RE.search(text) else ""
        raise DialsError(f"{what} failed (exit code {rc}){hint}: {_tail(text)}")
    return text


def _nxs(path):
    path = Path(path).resolve()
    if not path.is_file():
        raise DialsError(f"{path} does not exist or is not a file: give an NXmx file from daas nxmx convert")
    return path


# -- reading a file with dxtbx ------------------------------------------------

@dataclass(frozen=True)
class Panel:
    """One dxtbx panel, in dxtbx's lab frame (imgCIF: x = -McStas x, z = -McStas z), mm."""

    name: str
    origin_mm: tuple
    fast_axis: tuple
    slow_axis: tuple
    pixel_size_mm: tuple  # (fast, slow)
    image_size: tuple  # (fast, slow) pixels


@dataclass(frozen=True)
class DxtbxReading:
    """What dxtbx read from an NXmx file."""

    path: str
    format_class: str
    images: int
    panels: tuple
    wavelengths_A: tuple  # per image
    sample_to_source: tuple
    goniometer: bool
    scan: bool

    @property
    def n_panels(self) -> int:
        return len(self.panels)

    @property
    def image_size(self) -> tuple:
        """(fast, slow) pixels of each panel (all panels are alike here)."""
        sizes = {p.image_size for p in self.panels}
        return next(iter(sizes)) if len(sizes) == 1 else tuple(sorted(sizes))

    @property
    def wavelength_A(self) -> float:
        """The first image's wavelength."""
        return self.wavelengths_A[0] if self.wavelengths_A else float("nan")

    @property
    def still(self) -> bool:
        return not self.goniometer and not self.scan

    def to_dict(self) -> dict:
        return {"format_class": self.format_class, "images": self.images, "panels": self.n_panels,
                "image_size": list(self.image_size), "wavelength_A": self.wavelength_A,
                "still": self.still}

    def __str__(self):
        size = "x".join(map(str, self.image_size)) if len(self.image_size) == 2 else str(self.image_size)
        kind = "still" if self.still else "rotation"
        return (f"{self.format_class}: {self.n_panels} panels of {size} px (fast x slow),"
                f" {self.images} {kind} images, wavelength {self.wavelength_A:.5g} Å")


def read_with_dxtbx(nxs_path, *, timeout: float = READ_TIMEOUT_S, arrays_dir=None,
                    image: int = 0) -> DxtbxReading:
    """Read *nxs_path* with the installed DIALS's dxtbx (``FormatNXmx``...).

    With *arrays_dir*, dxtbx's mask and raw data of *image* are also saved
    there (``mask.npy``, ``data.npy``: (panels, slow, fast)). Raises
    :class:`DialsUnavailableError` without DIALS, :class:`DialsError` when
    dxtbx cannot read the file (the message quotes dxtbx).
    """
    python = _require()
    path = _nxs(nxs_path)
    with tempfile.TemporaryDirectory(prefix="daas-dxtbx-") as tmp:
        out = Path(tmp) / "read.json"
        cmd = [python, "-I", str(PROBE), "read", str(path), str(out)]
        if arrays_dir is not None:
            cmd += ["--arrays", str(Path(arrays_dir).resolve()), "--image", str(int(image))]
        run_dials(cmd, tmp, timeout, f"dxtbx reading {path.name}")
        raw = json.loads(out.read_text())
    if raw["format_class"] is None:
        raise DialsError(f"dxtbx does not recognise {path} as any image format it knows (not NXmx?)")
    panels = tuple(Panel(p["name"], tuple(p["origin_mm"]), tuple(p["fast_axis"]), tuple(p["slow_axis"]),
                         tuple(p["pixel_size_mm"]), tuple(p["image_size"])) for p in raw["panels"])
    return DxtbxReading(str(path), raw["format_class"], raw["images"], panels,
                        tuple(raw["wavelengths_A"]), tuple(raw["sample_to_source"] or ()),
                        raw["goniometer"], raw["scan"])


# -- spot finding and indexing ------------------------------------------------

@dataclass(frozen=True)
class Spot:
    """A strong spot: image index, panel, centroid (fast, slow px), summed counts."""

    image: int
    panel: int
    x: float
    y: float
    intensity: float


@dataclass(frozen=True)
class IndexedImage:
    """One indexed still: its refined cell and orientation.

    ``A`` is dxtbx's setting matrix UB (row-major 3x3, reciprocal Å, in
    dxtbx's lab frame): reciprocal lattice vector of hkl = A @ (h, k, l).
    """

    image: int
    unit_cell: tuple  # a, b, c (Å), alpha, beta, gamma (°)
    space_group: str  # full symbol, e.g. "P 1 21 1"
    space_group_number: int  # e.g. 4
    A: tuple
    indexed_spots: int


@dataclass(frozen=True)
class IndexingSummary:
    """What ``find_and_index`` found; the DIALS files stay in ``workdir``."""

    workdir: str
    images: int
    spots_per_image: tuple
    indexed: tuple  # IndexedImage per indexed still
    spots: tuple = field(repr=False, default=())

    @property
    def indexed_images(self) -> tuple:
        return tuple(sorted({c.image for c in self.indexed}))

    @property
    def unit_cell(self) -> tuple | None:
        """Median refined cell over the indexed images, or None."""
        if not self.indexed:
            return None
        cols = list(zip(*(c.unit_cell for c in self.indexed)))
        return tuple(sorted(col)[len(col) // 2] for col in cols)

    def to_dict(self) -> dict:
        return {"workdir": self.workdir, "images": self.images,
                "spots_per_image": list(self.spots_per_image),
                "indexed_images": list(self.indexed_images), "unit_cell": self.unit_cell}

    def __str__(self):
        n = len(self.indexed_images)
        spots = sum(self.spots_per_image)
        cell = ("" if self.unit_cell is None else
                "; median cell " + ", ".join(f"{x:.2f}" for x in self.unit_cell))
        return (f"{self.images} images, {spots} spots ({spots / max(self.images, 1):.0f} per image),"
                f" {n} indexed{cell}")


def _mono_sim_standin(workdir, python):
    """A folder to put on DIALS' path, or None.

    Debian's python3-cctbx lacks the compiled ``xfel_mono_sim_ext``, which
    DIALS 3.12's stills refinement (nave_parameters -> xfel.mono_simulation)
    imports but does not use for monochromatic data; without it every
    stills indexing ends in "No suitable indexing solution found". Where the
    real module is missing, an empty stand-in for exactly that module is
    provided; nothing else of DIALS is changed.
    """
    try:
        r = subprocess.run([python, "-c", "import xfel_mono_sim_ext"], env=_environment(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=CHECK_TIMEOUT_S)
        if r.returncode == 0:
            return None
    except (OSError, subprocess.TimeoutExpired):
        pass
    folder = Path(workdir) / ".standin"
    folder.mkdir(exist_ok=True)
    (folder / "xfel_mono_sim_ext.py").write_text(
        "# Empty stand-in: Debian's python3-cctbx lacks this compiled module (see"
        " server_ext/nxmx/dials.py).\n")
    return folder


def _cell_text(unit_cell):
    try:
        values = [float(x) for x in unit_cell]
    except (TypeError, ValueError):
        values = []
    if len(values) != 6 or not all(v > 0 for v in values):
        raise DialsError(f"unit_cell must be six positive numbers (a, b, c, alpha, beta, gamma),"
                         f" got {unit_cell!r}")
    return ",".join(f"{v:g}" for v in values)


def find_and_index(nxs_path, workdir, unit_cell=None, space_group=None, *,
                   timeout: float = STEP_TIMEOUT_S, nproc: int | None = None) -> IndexingSummary:
    """Import *nxs_path* into DIALS, find spots and index the stills.

    Runs ``dials.import``, ``dials.find_spots`` and ``dials.ssx_index``
    (with *unit_cell* (a, b, c, alpha, beta, gamma) and *space_group*, e.g.
    ``"P43212"``, when known) in *workdir*, each within *timeout* seconds,
    and returns an :class:`IndexingSummary`. Raises
    :class:`DialsUnavailableError` without DIALS and :class:`DialsError`
    when a program fails (the message quotes it).
    """
    python = _require()
    path = _nxs(nxs_path)
    if (unit_cell is None) != (space_group is None):
        raise DialsError("give unit_cell and space_group together (or neither)")
    cell = _cell_text(unit_cell) if unit_cell is not None else None
    if space_group is not None and not re.fullmatch(r"[A-Za-z0-9 ()/:\-]+", str(space_group)):
        raise DialsError(f"space_group must be a symbol such as 'P43212' or a number, got {space_group!r}")
    workdir = Path(workdir).resolve()
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DialsError(f"cannot create the DIALS folder {workdir} ({e.strerror or e})") from None
    for name in ("imported.expt", "strong.refl", "indexed.expt", "indexed.refl"):
        (workdir / name).unlink(missing_ok=True)  # no stale results from an earlier run
    nproc = nproc or max(1, min(4, os.cpu_count() or 1))
    text = run_dials([_program("dials.import"), str(path)], workdir, timeout, f"dials.import of {path.name}")
    if not (workdir / "imported.expt").is_file():  # it says so but exits 0
        raise DialsError(f"dials.import of {path.name} failed: DIALS cannot read it as images: {_tail(text)}")
    found = run_dials([_program("dials.find_spots"), "imported.expt", f"nproc={nproc}"], workdir, timeout,
                      "dials.find_spots")
    if re.search(r"^Saved 0 reflections", found, re.M):  # else ssx_index fails with a traceback
        raise DialsError(f"dials.find_spots found no spots on the images of {path.name}: nothing to index"
                         " (frames without diffraction? convert others, e.g. with a higher min_pulse_energy)")
    index = [_program("dials.ssx_index"), "imported.expt", "strong.refl", f"nproc={nproc}"]
    if cell is not None:
        index += [f"unit_cell={cell}", f"space_group={str(space_group).replace(' ', '')}"]
    run_dials(index, workdir, timeout, "dials.ssx_index", extra_path=_mono_sim_standin(workdir, python))
    out = workdir / "summary.json"
    run_dials([python, "-I", str(PROBE), "summary", str(workdir), str(out)], workdir, timeout,
              "reading DIALS' results")
    raw = json.loads(out.read_text())
    return IndexingSummary(
        workdir=str(workdir), images=raw["images"], spots_per_image=tuple(raw["spots_per_image"]),
        indexed=tuple(IndexedImage(c["image"], tuple(c["unit_cell"]), c["space_group"],
                                   c["space_group_number"], tuple(c["A"]), c["indexed_spots"])
                      for c in raw["crystals"]),
        spots=tuple(Spot(*s) for s in raw["spots"]))
