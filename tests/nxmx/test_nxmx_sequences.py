"""Runs whose modules are split over several sequence files: every frame of
every module equals extra_data's reading, across file boundaries, with a
selection whose frames do not fall on the copy's batch edges."""

import warnings

import h5py
import numpy as np
import pytest
from extra_data import RunDirectory

import nxmx_mockruns as mr
from server_ext.nxmx import convert_run
from server_ext.nxmx import compressed
from server_ext.nxmx.compressed import BATCH_FRAMES

SRC = mr.AGIPD_SOURCE + ":xtdf"
NTRAINS, PER_FILE, PULSES = 9, 3, 5
TRAINS = slice(1, 8)  # starts and ends inside sequence files
MIN_ENERGY = 250.0


@pytest.fixture(scope="module")
def seq_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("seq") / "r0239"
    energies = mr.make_agipd_sequence_run(d, NTRAINS, PER_FILE, PULSES)
    return d, energies["SPB_XTD9_XGM/DOOCS/MAIN"]


def expected_labels(energy):
    tids = np.arange(10000, 10000 + NTRAINS)[TRAINS]
    return [(t, p) for t in tids for p in range(PULSES) if energy[t - 10000, p] >= MIN_ENERGY]


def test_mock_run_has_several_sequence_files(seq_run):
    run_dir, energy = seq_run
    assert len(list(run_dir.glob("CORR-*AGIPD07-S*.h5"))) == 3
    labels = expected_labels(energy)
    # The selection must exercise partial batches and boundaries inside batches.
    assert len(labels) % BATCH_FRAMES != 0
    assert 10 < len(labels) < (TRAINS.stop - TRAINS.start) * PULSES


@pytest.mark.parametrize("mode,threads", [("virtual", None), ("copy", 1), ("copy", 3), ("copy", "hdf5")])
def test_frames_across_sequence_files(seq_run, tmp_path, monkeypatch, mode, threads):
    run_dir, energy = seq_run
    out = tmp_path / "seq.nxs"
    if threads == "hdf5":  # no bitshuffle library to call: HDF5's own filter, serially
        monkeypatch.setattr(compressed, "_bitshuffle_lib", lambda: None)
        threads = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        convert_run(run_dir, out, mode=mode, threads=threads, trains=TRAINS,
                    min_pulse_energy=MIN_ENERGY, distance=100)
    run = RunDirectory(str(run_dir))
    with h5py.File(out, "r") as f:
        tid, pid = f["/entry/data/train_id"][()], f["/entry/data/pulse_id"][()]
        labels = list(zip(tid.tolist(), pid.tolist()))
        assert labels == expected_labels(energy)
        data = f["/entry/data/data"][()].reshape(len(labels), 16, 512, 128)  # modules stacked along slow
    for m in range(16):
        kd = run[SRC.format(mod=m), "image.data"]
        where = {(int(t), int(p)): i for i, (t, p) in enumerate(zip(
            kd.train_id_coordinates(), run[SRC.format(mod=m), "image.pulseId"].ndarray().ravel()))}
        expected = kd.ndarray()[[where[tp] for tp in labels]]
        assert np.any(expected[:, :32])
        for i, tp in enumerate(labels):
            np.testing.assert_array_equal(data[i, m], expected[i], err_msg=f"module {m}, frame {tp}")
