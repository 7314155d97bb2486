"""Shared NXmx fixtures: small mock runs (session scoped) and converted files."""

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import nxmx_mockruns  # noqa: E402

from server_ext.nxmx import convert_run  # noqa: E402

DISTANCE_MM = nxmx_mockruns.DISTANCE_MM


def _quiet_convert(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_run(*args, **kwargs)


@pytest.fixture(scope="session")
def agipd_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("agipd") / "r0238"
    energies = nxmx_mockruns.make_agipd_run(d)
    return d, energies


@pytest.fixture(scope="session")
def agipd_dir(agipd_run):
    return agipd_run[0]


@pytest.fixture(scope="session")
def lpd_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("lpd") / "r0450"
    nxmx_mockruns.make_lpd_run(d)
    return d


@pytest.fixture(scope="session")
def jf_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("jf") / "r0012"
    nxmx_mockruns.make_jungfrau_run(d)
    return d


@pytest.fixture(scope="session")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("nxs")


@pytest.fixture(scope="session")
def agipd_virtual(agipd_dir, out_dir):
    return _quiet_convert(agipd_dir, out_dir / "agipd_virtual.nxs", distance=DISTANCE_MM)


@pytest.fixture(scope="session")
def agipd_copy(agipd_dir, out_dir):
    # Two trains keep the copy small; energies select about half the frames.
    return _quiet_convert(agipd_dir, out_dir / "agipd_copy.nxs", mode="copy",
                          trains=slice(0, 2), min_pulse_energy=300, distance=DISTANCE_MM)


@pytest.fixture(scope="session")
def agipd_selected(agipd_dir, out_dir):
    return _quiet_convert(agipd_dir, out_dir / "agipd_selected.nxs", trains=slice(2, 50),
                          min_pulse_energy=500, distance=DISTANCE_MM)


@pytest.fixture(scope="session")
def lpd_virtual(lpd_dir, out_dir):
    return _quiet_convert(lpd_dir, out_dir / "lpd.nxs", photon_energy=9.3, distance=DISTANCE_MM)


@pytest.fixture(scope="session")
def jf_virtual(jf_dir, out_dir):
    return _quiet_convert(jf_dir, out_dir / "jf.nxs", photon_energy=9.3, distance=DISTANCE_MM)


@pytest.fixture(scope="session")
def jf_copy(jf_dir, out_dir):
    return _quiet_convert(jf_dir, out_dir / "jf_copy.nxs", mode="copy", trains=slice(0, 4),
                          photon_energy=9.3, distance=DISTANCE_MM)
