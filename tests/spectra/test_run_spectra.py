"""The spectra of a run are found from its data, so notebooks name no demo source."""

import pytest

from server_ext.spectra import SpectraError
from server_ext.spectra.datafiles import find_run_spectra
from server_ext.spectra.synthetic import write_demo_run


def test_the_one_spectra_key_of_a_run_is_found(tmp_path):
    info = write_demo_run(tmp_path, n_trains=6, pulses_per_train=2, n_points=300)
    assert find_run_spectra(info["path"]) == (info["source"], info["key"])
    with pytest.raises(SpectraError, match="no spectra in .*name the source and key"):
        find_run_spectra(info["path"], min_points=301)


def test_several_candidates_are_listed_and_not_guessed(tmp_path):
    from extra_data.tests.mockdata import write_file
    from extra_data.tests.mockdata.xgm import XGM

    # two XGMs: each records 1-D float arrays per train (intensityTD), like a spectrum
    write_file(str(tmp_path / "RAW-R0001-DA01-S00000.h5"),
               [XGM("SA1_XTD2_XGM/DOOCS/MAIN"), XGM("SPB_XTD9_XGM/DOOCS/MAIN")], ntrains=4)
    with pytest.raises(SpectraError, match="several keys .*SA1_XTD2_XGM.*SPB_XTD9_XGM.*name the source and key"):
        find_run_spectra(tmp_path)


def test_a_folder_that_is_not_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(SpectraError, match="not a readable EuXFEL run"):
        find_run_spectra(tmp_path)


def test_a_runs_axis_keys_are_found_and_a_background_is_not(tmp_path):
    """Control keys of the spectra's length that run one way are axis
    candidates; a background array of that length is not."""
    import h5py
    import numpy as np

    from server_ext.spectra.datafiles import find_run_axis
    from server_ext.spectra.synthetic import DEMO_AXIS_SOURCE

    plain = write_demo_run(tmp_path / "plain", n_trains=6, pulses_per_train=2, n_points=300)
    assert find_run_axis(plain["path"], 300) == [(DEMO_AXIS_SOURCE, "twoTheta")]
    assert find_run_axis(plain["path"], 299) == []
    info = write_demo_run(tmp_path / "more", n_trains=6, pulses_per_train=2, n_points=300)
    run_file = next((tmp_path / "more" / "r0001").glob("*.h5"))
    rng = np.random.default_rng(0)
    with h5py.File(run_file, "a") as f:
        group = f[f"CONTROL/{DEMO_AXIS_SOURCE}"]
        for name, value in (("background", rng.random(300)), ("q", np.linspace(0.7, 5.8, 300))):
            group[f"{name}/value"] = np.repeat(value[None], 6, 0)
            group[f"{name}/timestamp"] = np.zeros(6, np.uint64)
    assert find_run_axis(info["path"], 300) == [(DEMO_AXIS_SOURCE, "q"), (DEMO_AXIS_SOURCE, "twoTheta")]


def test_a_run_named_without_its_source_says_where_its_spectra_could_be(tmp_path, capsys):
    """Training, evaluating or replaying a run with no source named: the error names the
    run's candidates (a folder that is no run: the error as before)."""
    from hub_ext.cli import main
    from server_ext.spectra.sources import as_source

    info = write_demo_run(tmp_path, n_trains=6, pulses_per_train=2, n_points=300)
    could_be = f"; this run's could be {info['source']} (key {info['key']})"
    first = info["first_train"]
    labels = ["--labels", f"a={first}:{first + 2}", f"b={first + 4}:{first + 6}"]
    assert main(["spectra", "train", info["path"], *labels, "-o", str(tmp_path / "m")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"a run's spectra are named by their source and key{could_be}")
    assert not (tmp_path / "m").exists()
    with pytest.raises(SpectraError) as e:
        as_source(info["path"], key=info["key"])
    assert str(e.value) == f"replaying a run needs source= and key={could_be}"
    (tmp_path / "no-run").mkdir()
    with pytest.raises(SpectraError) as e:
        as_source(tmp_path / "no-run", key=info["key"])
    assert str(e.value) == "replaying a run needs source= and key="


def test_a_detectors_images_are_not_read_as_spectra(tmp_path):
    """An image of 512x128 pixels per pulse was read as 512 spectra of 128 points."""
    from extra_data.tests.mockdata import write_file
    from extra_data.tests.mockdata.detectors import AGIPDModule

    from server_ext.spectra.sources import RunSource

    write_file(str(tmp_path / "CORR-R0001-AGIPD00-S00000.h5"),
               [AGIPDModule("SPB_DET_AGIPD1M-1/DET/0CH0", frames_per_train=2, raw=False)], ntrains=2)
    with pytest.raises(SpectraError) as e:
        RunSource(tmp_path, "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf", "image.data")
    assert str(e.value) == ("key 'image.data' of 'SPB_DET_AGIPD1M-1/DET/0CH0:xtdf' holds arrays of 512x128, "
                            "not spectra (1-D arrays); no key of this run holds spectra (1-D float arrays)")
