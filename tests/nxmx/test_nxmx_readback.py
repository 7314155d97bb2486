"""Frames read back from a written NXmx file: the file's own geometry, assembled images."""

import h5py
import numpy as np
import pytest

from server_ext.nxmx.detectors import AGIPD_1M, JUNGFRAU, LPD_1M
from server_ext.nxmx.geometry import default_geometry
from server_ext.nxmx.readback import FrameImages, ReadbackError, detector_geometry


@pytest.mark.parametrize("fixture,kind", [("agipd_virtual", AGIPD_1M), ("lpd_virtual", LPD_1M),
                                          ("jf_virtual", JUNGFRAU)])
def test_geometry_in_the_file_is_the_geometry_converted_from(fixture, kind, request):
    path = request.getfixturevalue(fixture)
    geom = detector_geometry(path)
    expected = default_geometry(kind, geom.expected_data_shape[0])  # the conversions used the default layout
    assert type(geom) is type(expected)
    np.testing.assert_allclose(geom.get_pixel_positions(), expected.get_pixel_positions(), atol=1e-9)


def test_assembled_frame_holds_the_stored_pixels(agipd_virtual):
    frames = FrameImages(agipd_virtual)
    with h5py.File(agipd_virtual, "r") as f:
        n, stored = f["/entry/data/data"].shape[0], f["/entry/data/data"][3]
    assert len(frames) == n
    image, (cy, cx) = frames.image(3)
    stored = stored.astype(np.float32).reshape(16, 512, 128)  # either layout: modules in memory order
    expected_image, _ = default_geometry(AGIPD_1M, 16).position_modules(stored)
    # the file stores vectors in mm: rounding may move a pixel at a tile edge, nothing more
    assert image.shape == expected_image.shape
    same = np.isfinite(image) == np.isfinite(expected_image)
    assert same.mean() > 0.999
    both = np.isfinite(image) & np.isfinite(expected_image)
    assert (image[both] == expected_image[both]).mean() > 0.999
    np.testing.assert_allclose(np.nansum(image), np.nansum(stored), rtol=1e-3)
    assert 0 < cy < image.shape[0] and 0 < cx < image.shape[1]
    with pytest.raises(IndexError):
        frames.raw(n)


def test_a_file_that_is_not_nxmx_is_a_clear_error(tmp_path):
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ReadbackError, match="not a readable NXmx file"):
        FrameImages(plain)
    broken = tmp_path / "broken.nxs"
    broken.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(ReadbackError):
        detector_geometry(broken)


@pytest.mark.parametrize("fixture", ["lpd_virtual", "jf_virtual"])
def test_every_stored_pixel_lands_once(fixture, request):
    path = request.getfixturevalue(fixture)
    frames = FrameImages(path)
    with h5py.File(path, "r") as f:
        stored = f["/entry/data/data"][0].astype(np.float64)
    raw = frames.raw(0)
    assert raw.shape == frames.geometry.expected_data_shape
    assert np.isfinite(raw).all()  # every tile of every module filled from the file
    np.testing.assert_allclose(np.nansum(raw), np.nansum(stored), rtol=1e-6)
    np.testing.assert_allclose(np.sort(raw, axis=None), np.sort(stored, axis=None).astype(np.float32))
