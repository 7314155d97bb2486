"""Read a written NXmx file back as pictures: its geometry as an ``extra_geom``
object and its frames as assembled detector images.

The geometry comes from the file alone (the ``NXdetector_module`` groups
``convert_run`` writes: one per ASIC tile, with its corner, fast and slow
pixel vectors), so what is shown is what DIALS and other readers will see,
not the geometry the conversion started from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import ConversionError
from .nexus import DETECTOR

DATA = "/entry/data/data"


class ReadbackError(ConversionError):
    """The file is not an NXmx file this package wrote (or it is damaged)."""


def _kind_for(description: str):
    from .detectors import KINDS

    for kind in KINDS:
        if description.startswith(kind.name) or description.startswith(kind.description):
            return kind
    raise ReadbackError(f"unknown detector {description!r}: only files written by convert_run can be shown")


def _vector(ds) -> np.ndarray:
    """A translation's vector scaled by its length, in metres (extra_geom's unit)."""
    scale = {"mm": 1e-3, "m": 1.0, "um": 1e-6}[ds.attrs.get("units", "mm")]
    return np.asarray(ds.attrs["vector"], dtype=float) * float(ds[()]) * scale


def _tile_name(name: str) -> tuple[int, int]:
    """``module_MM_asic_TT`` -> (MM, TT): extra_geom's module and tile numbers."""
    try:
        parts = name.split("_")
        return int(parts[1]), int(parts[3])
    except (IndexError, ValueError):
        raise ReadbackError(f"unexpected detector module {name!r}: only files written by convert_run "
                            "can be shown") from None


def _read_tiles(path) -> tuple[object, list[tuple[int, int, tuple, tuple, object]]]:
    """The detector kind and, per tile: (module, tile, data_origin, data_size, GeometryFragment)."""
    import h5py
    from extra_geom.base import GeometryFragment

    try:
        with h5py.File(path, "r") as f:
            det = f[DETECTOR]
            description = det["description"][()]
            kind = _kind_for(description.decode() if isinstance(description, bytes) else str(description))
            tiles = []
            for name, mod in det.items():
                if mod.attrs.get("NX_class") not in (b"NXdetector_module", "NXdetector_module"):
                    continue
                origin, size = tuple(mod["data_origin"][()]), tuple(mod["data_size"][()])
                fragment = GeometryFragment(
                    corner_pos=_vector(mod["module_offset"]), ss_vec=_vector(mod["slow_pixel_direction"]),
                    fs_vec=_vector(mod["fast_pixel_direction"]), ss_pixels=int(size[-2]), fs_pixels=int(size[-1]))
                module, tile = _tile_name(name)
                tiles.append((module, tile, origin, size, fragment))
    except (OSError, KeyError) as e:
        raise ReadbackError(f"{path} is not a readable NXmx file ({e})") from None
    if not tiles or sorted({t[0] for t in tiles}) != list(range(len({t[0] for t in tiles}))):
        raise ReadbackError(f"{path} has no complete set of detector modules")
    return kind, sorted(tiles, key=lambda t: t[:2])


def detector_geometry(path: str | Path):
    """The ``extra_geom`` geometry described by an NXmx file's detector modules."""
    import extra_geom

    kind, tiles = _read_tiles(path)
    modules: dict[int, list] = {}
    for module, _, _, _, fragment in tiles:
        modules.setdefault(module, []).append(fragment)
    return getattr(extra_geom, kind.geometry_class)([modules[m] for m in sorted(modules)])


class FrameImages:
    """Frames of an NXmx file, assembled into detector images (opened lazily, one at a time).

    Example::

        frames = FrameImages("processed/r0029.nxs")
        image, centre = frames.image(0)     # 2-D array, beam position in pixels
    """

    def __init__(self, path: str | Path):
        import h5py

        self.path = Path(path)
        self.geometry = detector_geometry(self.path)
        _, self._tiles = _read_tiles(self.path)
        try:
            with h5py.File(self.path, "r") as f:
                data = f[DATA]
                self.n_frames = int(data.shape[0])
                self.train_ids = f["/entry/data/train_id"][()] if "train_id" in f["/entry/data"] else None
        except (OSError, KeyError) as e:
            raise ReadbackError(f"{self.path} has no readable {DATA} ({e})") from None

    def __len__(self) -> int:
        return self.n_frames

    def raw(self, index: int) -> np.ndarray:
        """Frame *index* as stored: (modules, slow, fast)."""
        import h5py

        if not 0 <= index < self.n_frames:
            raise IndexError(f"frame {index} outside 0..{self.n_frames - 1}")
        try:
            with h5py.File(self.path, "r") as f:
                frame = np.asarray(f[DATA][index], dtype=np.float32)
        except OSError as e:
            raise ReadbackError(f"frame {index} of {self.path} cannot be read ({e}); "
                                "the run's files may have moved") from None
        # each tile from where the file says it is (data_origin/data_size: 2-D for an image of
        # stacked tiles, 3-D for a module axis) to where extra_geom expects it
        out = np.full(self.geometry.expected_data_shape, np.nan, dtype=np.float32)
        for module, tile, origin, size, _ in self._tiles:
            lead = tuple(origin[:-2])
            rows = slice(origin[-2], origin[-2] + size[-2])
            cols = slice(origin[-1], origin[-1] + size[-1])
            out[module][self.geometry._tile_slice(tile)] = frame[lead + (rows, cols)]
        return out

    def image(self, index: int) -> tuple[np.ndarray, tuple[float, float]]:
        """Frame *index* assembled with the file's geometry, and the beam centre (row, column)."""
        image, centre = self.geometry.position_modules(self.raw(index))
        return image, (float(centre[0]), float(centre[1]))
