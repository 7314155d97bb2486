"""Geometry read back through ``nxmx`` (the reader dxtbx uses) matches extra_geom."""

import warnings

import h5py
import nxmx
import numpy as np
import pytest
from extra_geom import AGIPD_1MGeometry, JUNGFRAUGeometry, LPD_1MGeometry

from server_ext.nxmx import convert_run
from server_ext.nxmx.geometry import DefaultGeometryWarning, default_geometry, image_layout
from server_ext.nxmx.detectors import AGIPD_1M, JUNGFRAU, LPD_1M

from nxmx_mockruns import DISTANCE_MM  # not "from conftest": another directory's conftest may be the one imported


def nxmx_pixel_centres(path):
    """Pixel centres (mm) per data position, recomputed from the NXmx file."""
    with h5py.File(path, "r") as f:
        (entry,) = nxmx.NXmx(f).entries
        (det,) = entry.instruments[0].detectors
        shape = f["/entry/data/data"].shape[1:]
        out = np.full(shape + (3,), np.nan)
        for mod in det.modules:
            fast, slow = mod.fast_pixel_direction, mod.slow_pixel_direction
            chain = nxmx.get_dependency_chain(mod.module_offset)
            assert chain[-1].depends_on is None  # ends in "."
            origin = nxmx.get_cumulative_transformation(chain)[0] @ [0, 0, 0, 1]
            fvec = np.asarray(fast.vector) * fast[()].to("mm").magnitude
            svec = np.asarray(slow.vector) * slow[()].to("mm").magnitude
            # fast/slow depend on module_offset, so their chain is one longer
            assert len(nxmx.get_dependency_chain(fast)) == len(chain) + 1
            s0, f0 = mod.data_origin  # 2-D hyperslab of the image
            ns, nf = mod.data_size
            jj, ii = np.meshgrid(np.arange(ns) + 0.5, np.arange(nf) + 0.5, indexing="ij")
            out[s0:s0 + ns, f0:f0 + nf] = (origin[:3] + jj[..., None] * svec + ii[..., None] * fvec)
    return out


def assert_positions_match(path, geom):
    got = nxmx_pixel_centres(path)
    expected = geom.get_pixel_positions(centre=True) * 1e3
    expected[..., 2] += DISTANCE_MM
    # The file stacks the tiles along the slow axis of its image.
    expected = np.moveaxis(image_layout(geom).to_image(np.moveaxis(expected, -1, 0)), 0, -1)
    assert not np.isnan(got).any(), "every pixel belongs to one module"
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_agipd_positions_default_geometry(agipd_virtual):
    geom = default_geometry(AGIPD_1M, 16)
    assert_positions_match(agipd_virtual, geom)
    with h5py.File(agipd_virtual) as f:
        mods = [k for k, v in f["/entry/instrument/ELE_D0"].items()
                if v.attrs.get("NX_class") == "NXdetector_module"]
        assert len(mods) == 128
        m = f["/entry/instrument/ELE_D0/module_05_asic_03"]
        assert m["data_origin"].dtype.kind == "i" and list(m["data_origin"][()]) == [5 * 512 + 192, 0]
        assert list(m["data_size"][()]) == [64, 128]
        for k in ("module_offset", "fast_pixel_direction", "slow_pixel_direction"):
            assert m[k].attrs["units"] == "mm"
            assert m[k].attrs["transformation_type"] == "translation"
            assert m[k].attrs["depends_on"].startswith("/entry/")
            assert np.isclose(np.linalg.norm(m[k].attrs["vector"]), 1)
        arm = f["/entry/instrument/ELE_D0/transformations/AXIS_D0"]
        assert arm.attrs["equipment_component"] == "detector_arm"
        assert arm.attrs["depends_on"] == "."


def test_lpd_and_jungfrau_positions(lpd_virtual, jf_virtual):
    assert_positions_match(lpd_virtual, default_geometry(LPD_1M, 16))
    assert_positions_match(jf_virtual, default_geometry(JUNGFRAU, 8))


def test_geometry_from_crystfel_file(agipd_dir, tmp_path):
    # A non-default layout, passed as a .geom file, is what the file describes.
    geom = AGIPD_1MGeometry.from_quad_positions(
        quad_pos=[(-520, 630), (-545, -5), (525, -155), (540, 470)]).offset((0.5e-3, -0.25e-3))
    geom_file = tmp_path / "agipd.geom"
    geom.write_crystfel_geom(str(geom_file), photon_energy=9300, clen=0.15, adu_per_ev=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DefaultGeometryWarning)
        out = convert_run(agipd_dir, tmp_path / "g.nxs", geometry=geom_file, distance=DISTANCE_MM,
                          trains=slice(0, 1))
    reread = AGIPD_1MGeometry.from_crystfel_geom(str(geom_file))
    assert_positions_match(out, reread)
    np.testing.assert_allclose(reread.get_pixel_positions(), geom.get_pixel_positions(), atol=1e-9)


def test_geometry_object_and_default_warning(agipd_dir, tmp_path):
    geom = default_geometry(AGIPD_1M, 16).offset((1e-3, 2e-3))
    out = convert_run(agipd_dir, tmp_path / "o.nxs", geometry=geom, distance=DISTANCE_MM,
                      trains=slice(0, 1))
    assert_positions_match(out, geom)
    with pytest.warns(DefaultGeometryWarning, match="default"):
        convert_run(agipd_dir, tmp_path / "d.nxs", distance=DISTANCE_MM, trains=slice(0, 1))


@pytest.mark.parametrize("kind,cls,n", [(AGIPD_1M, AGIPD_1MGeometry, 16), (LPD_1M, LPD_1MGeometry, 16),
                                        (JUNGFRAU, JUNGFRAUGeometry, 8), (JUNGFRAU, JUNGFRAUGeometry, 3)])
def test_default_geometries_do_not_overlap(kind, cls, n):
    geom = default_geometry(kind, n)
    assert isinstance(geom, cls) and geom.expected_data_shape[0] == n
    boxes = np.array([[c[:, :2].min(0), c[:, :2].max(0)]
                      for mod in geom.modules for c in (t.corners() for t in mod)])
    lo, hi = boxes[:, 0], boxes[:, 1]
    overlap = (np.minimum(hi[:, None], hi[None]) - np.maximum(lo[:, None], lo[None])).clip(0)
    area = overlap[..., 0] * overlap[..., 1]
    np.fill_diagonal(area, 0)
    assert area.max() < 1e-12, "two tiles overlap"
