"""Large trains reuse their memory instead of faulting in fresh pages."""

import json
import subprocess
import sys

import numpy as np
import pytest

from server_ext.spectra import allocator

SRC, KEY = "SPB_TEST/PROC/SPECTRA:output", "data.intensity"
TRAINS = 6

# a client in a process of its own, so that only its page faults count
RECEIVE = """
import json, resource, sys, threading
from server_ext.spectra import KaraboBridgeSource
from server_ext.spectra.allocator import kept_bytes
from server_ext.spectra.stream import StreamStats

source = KaraboBridgeSource(sys.argv[1], key="data.intensity", timeout=30.0,
                            keep_buffers=sys.argv[2] == "keep")
faults = []
trains = source.trains(threading.Event(), StreamStats())
for _, arr, _ in trains:
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
    del arr
    if len(faults) == int(sys.argv[3]):
        break
trains.close()
print(json.dumps({"faults": faults, "kept": kept_bytes()}))
"""


def receive(endpoint, mode):
    out = subprocess.run([sys.executable, "-c", RECEIVE, endpoint, mode, str(TRAINS)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_large_trains_reuse_their_memory(bridge):
    spectra = np.ones((2500, 4020), np.float32)  # 40 MB: above glibc's own 32 MiB
    for tid in range(2 * TRAINS):
        bridge.feed({SRC: {KEY: spectra}}, {SRC: {"timestamp.tid": tid, "source": SRC}})
    alone = receive(bridge.endpoint, "alone")
    kept = receive(bridge.endpoint, "keep")
    # from the third train on: the first ones pay for the buffers either way
    per_train = {name: np.diff(r["faults"][2:]).mean() for name, r in
                 (("alone", alone), ("keep", kept))}
    if per_train["alone"] < 2000:
        pytest.skip(f"this kernel maps such buffers with huge pages ({per_train['alone']:.0f} "
                    "faults per 40 MB train): no per-page cost to remove")
    assert alone["kept"] == 0
    assert kept["kept"] >= spectra.nbytes
    assert per_train["keep"] < per_train["alone"] / 10, per_train


def test_keep_buffers_limits():
    assert allocator.keep_buffers(1 << 20)  # below glibc's own threshold: nothing to do
    assert not allocator.keep_buffers(2 << 30)  # too large to keep resident


def test_without_glibc_nothing_changes_and_it_is_asked_once(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_mallopt", lambda: calls.append(1))  # returns None: no glibc
    monkeypatch.setattr(allocator, "_kept", 0)
    monkeypatch.setattr(allocator, "_refused_from", allocator._LARGEST + 1)
    for _ in range(3):  # one train after another
        assert not allocator.keep_buffers(40 << 20)
    assert allocator.kept_bytes() == 0 and len(calls) == 1
    assert allocator.keep_buffers(1 << 20)
