"""DIALS' own reader, where installed (conda-forge only, not on PyPI)."""

import numpy as np
import pytest

dxtbx = pytest.importorskip(
    "dxtbx", reason="dxtbx is not on PyPI; install it with `conda install -c conda-forge dxtbx`")


def test_dxtbx_formatnxmx_reads_the_file(agipd_virtual):
    from dxtbx.format.FormatNXmx import FormatNXmx
    from dxtbx.model.experiment_list import ExperimentListFactory

    assert FormatNXmx.understand(str(agipd_virtual))
    experiments = ExperimentListFactory.from_filenames([str(agipd_virtual)])
    imageset = experiments.imagesets()[0]
    detector = imageset.get_detector()
    assert len(detector) == 128
    assert np.isclose(imageset.get_beam().get_wavelength(), 1.0)
    panels = imageset.get_raw_data(0)
    assert len(panels) == 128
