"""Detector geometry from ``extra_geom``: loading, checks, defaults, tiles.

``extra_geom`` coordinates are metres with x to the left looking along the
beam, y up and z along the beam: the McStas frame NXmx uses, so the vectors
are only rescaled to millimetres.
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import GeometryError

# Quadrant positions from the extra_geom documentation examples.
AGIPD_DEFAULT_QUADS = [(-525, 625), (-550, -10), (520, -160), (542.5, 475)]  # pixels
LPD_DEFAULT_QUADS = [(11.4, 299), (-11.5, 8), (254.5, -16), (278.5, 275)]  # mm


class DefaultGeometryWarning(UserWarning):
    """No geometry was given; an idealised default layout is used."""


@dataclass(frozen=True)
class Tile:
    """One ASIC tile: where its pixels sit in the data and in space (mm)."""

    module: int
    tile: int
    ss_slice: slice
    fs_slice: slice
    corner_mm: np.ndarray
    ss_vec_mm: np.ndarray
    fs_vec_mm: np.ndarray


def _geometry_class(kind):
    import extra_geom
    return getattr(extra_geom, kind.geometry_class)


def default_geometry(kind, n_modules):
    """The documented default layout for *kind* (idealised, not calibrated)."""
    cls = _geometry_class(kind)
    if kind.name == "AGIPD-1M":
        return cls.from_quad_positions(quad_pos=AGIPD_DEFAULT_QUADS)
    if kind.name == "LPD-1M":
        return cls.from_quad_positions(quad_pos=LPD_DEFAULT_QUADS)
    return _default_jungfrau(cls, n_modules)


def _default_jungfrau(cls, n_modules):
    # Two columns facing each other around the beam, as in the JF4M at SPB;
    # modules in pixel units with 2-pixel ASIC gaps and 33-pixel module gaps.
    width, height, gap = 4 * 256 + 3 * 2, 2 * 256 + 2, 33
    per_col = (n_modules + 1) // 2
    col_h = per_col * height + (per_col - 1) * gap
    positions, orientations = [], []
    for i in range(n_modules):
        col, row = divmod(i, per_col)
        if col == 0:  # left column (looking along the beam), read out upside down
            positions.append((width + 10, col_h / 2 - row * (height + gap)))
            orientations.append((-1, -1))
        else:
            positions.append((-width - 10, -col_h / 2 + row * (height + gap)))
            orientations.append((1, 1))
    return cls.from_module_positions(positions, orientations=orientations, asic_gap=2)


def load_geometry(geometry, kind, n_modules):
    """Return an ``extra_geom`` geometry for the detector, checked to fit it.

    *geometry* is None (default layout, with a warning), an ``extra_geom``
    geometry object, or the path of a CrystFEL ``.geom`` file.
    """
    cls = _geometry_class(kind)
    if geometry is None:
        warnings.warn(
            f"no geometry given: using the idealised default {kind.name} layout"
            " (see server_ext/nxmx/README.md); pass a calibrated CrystFEL .geom"
            " file for analysis", DefaultGeometryWarning, stacklevel=3)
        geom = default_geometry(kind, n_modules)
    elif isinstance(geometry, (str, Path)):
        path = Path(geometry)
        if not path.is_file():
            raise GeometryError(f"geometry file {path} does not exist")
        try:
            geom = cls.from_crystfel_geom(str(path))
        except Exception as e:
            raise GeometryError(
                f"{path} is not a {kind.name} CrystFEL geometry ({type(e).__name__}: {e});"
                f" pass the .geom file made for this detector"
            ) from None
    else:
        geom = geometry
    if not isinstance(geom, cls):
        raise GeometryError(
            f"the geometry is a {type(geom).__name__}, but the detector is a"
            f" {kind.name}: pass a {kind.geometry_class} or its .geom file"
        )
    expected = (n_modules,) + tuple(kind.module_shape)
    if tuple(geom.expected_data_shape) != expected:
        raise GeometryError(
            f"the geometry describes data of shape {tuple(geom.expected_data_shape)},"
            f" but this {kind.name} has {expected}: pass the geometry made for this detector"
        )
    return geom


def tiles(geom):
    """Yield one :class:`Tile` per ASIC, in module then tile order."""
    for m, module in enumerate(geom.modules):
        for t, frag in enumerate(module):
            ss, fs = geom._tile_slice(t)
            yield Tile(
                module=m, tile=t, ss_slice=ss, fs_slice=fs,
                corner_mm=np.asarray(frag.corner_pos, dtype=float) * 1e3,
                ss_vec_mm=np.asarray(frag.ss_vec, dtype=float) * 1e3,
                fs_vec_mm=np.asarray(frag.fs_vec, dtype=float) * 1e3,
            )


@dataclass(frozen=True)
class ImageLayout:
    """Where each ASIC tile's pixels sit in the file's 2-D image.

    The tiles are stacked along the slow axis, in module then tile order,
    each spanning the image's full width: tile i holds rows ``i * rows ...
    (i + 1) * rows``. Every dxtbx reads this: dxtbx < 3.16 takes only 2-D
    hyperslabs of rank-3 ``(frames, slow, fast)`` data and a 2-D mask, and
    (3.11) fails on a mask hyperslab narrower than the image. For AGIPD
    (tiles as wide as a module) it is simply the modules stacked.
    """

    #: (module, slow slice, fast slice) of each tile in the module's data
    tiles: tuple
    tile_shape: tuple  # (slow, fast)
    n_modules: int
    module_shape: tuple

    @property
    def shape(self) -> tuple:
        """(slow, fast) of one image."""
        return (len(self.tiles) * self.tile_shape[0], self.tile_shape[1])

    def row(self, i) -> int:
        """First image row of tile *i*."""
        return i * self.tile_shape[0]

    @property
    def is_module_stack(self) -> bool:
        """True where the image is just the modules one below the other."""
        return self.tile_shape[1] == self.module_shape[1]

    def to_image(self, modules):
        """``(..., modules, slow, fast)`` data -> ``(..., image slow, image fast)``."""
        modules = np.asarray(modules)
        lead = modules.shape[:-3]
        if self.is_module_stack:
            return modules.reshape(lead + self.shape)
        return np.concatenate([modules[..., m, ss, fs] for m, ss, fs in self.tiles], axis=-2)

    def to_modules(self, image):
        """The inverse of :meth:`to_image`."""
        image = np.asarray(image)
        lead = image.shape[:-2]
        if self.is_module_stack:
            return image.reshape(lead + (self.n_modules,) + tuple(self.module_shape))
        out = np.empty(lead + (self.n_modules,) + tuple(self.module_shape), image.dtype)
        rows = self.tile_shape[0]
        for i, (m, ss, fs) in enumerate(self.tiles):
            out[..., m, ss, fs] = image[..., i * rows:(i + 1) * rows, :]
        return out


def image_layout(geom) -> ImageLayout:
    """The :class:`ImageLayout` of files written with *geom*."""
    found = [(t.module, t.ss_slice, t.fs_slice) for t in tiles(geom)]
    shapes = {(ss.stop - ss.start, fs.stop - fs.start) for _, ss, fs in found}
    if len(shapes) != 1:
        raise GeometryError("the geometry's tiles differ in size; NXmx conversion needs equal tiles")
    shape = tuple(geom.expected_data_shape)
    return ImageLayout(tuple(found), shapes.pop(), shape[0], shape[1:])
