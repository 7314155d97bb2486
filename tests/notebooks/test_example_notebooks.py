"""The example notebook runs, top to bottom, on a session like the spawner writes."""

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from hub_ext.catalogs import Dataset
from hub_ext.demo.command import DEMO_ENVIRONMENTS, demo_catalog
from hub_ext.environments import parse_environments

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "explore_dataset.ipynb"


def session_for(pid, runs, tmp_path, monkeypatch):
    record = next(d for d in demo_catalog(runs)["datasets"] if d["pid"] == pid)
    dataset = Dataset.from_dict(record)
    env = parse_environments(DEMO_ENVIRONMENTS["environments"])[0]
    manifest = tmp_path / "session.json"
    manifest.write_text(json.dumps({
        "dataset": dataset.to_dict(), "dataset_path": dataset.path, "environment": env.to_dict(),
    }))
    monkeypatch.setenv("DAAS_SESSION", str(manifest))


def outputs(nb):
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.parametrize("pid,expected", [
    ("xfel:p002120:r0029", ["Lysozyme SFX", "SPB_DET_AGIPD1M-1/DET/0CH0", "SPB_XTD9_XGM/DOOCS/MAIN"]),
    ("petra:p02.1:11054321", ["LaB6", "Not an EuXFEL run directory", "entry/data/data"]),
])
def test_explore_notebook_runs(pid, expected, demo_runs, tmp_path, monkeypatch):
    session_for(pid, demo_runs, tmp_path, monkeypatch)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = outputs(nb)
    for needle in expected:
        assert needle in text


NXMX_NOTEBOOK = NOTEBOOK.with_name("nxmx_conversion.ipynb")


@pytest.mark.parametrize("pid", ["xfel:p002120:r0029", "xfel:p002121:r0012"])
def test_nxmx_notebook_converts_the_demo_runs(pid, demo_runs, tmp_path, monkeypatch):
    session_for(pid, demo_runs, tmp_path, monkeypatch)
    nb = nbformat.read(NXMX_NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = outputs(nb)
    assert "compliant (0 errors" in text
    slug = pid.replace(":", "-")
    assert (tmp_path / "processed" / f"{slug}.nxs").exists()


def test_spectra_notebook_finds_the_transition(demo_runs, tmp_path, monkeypatch):
    from server_ext.spectra.synthetic import write_demo_run

    session_for("xfel:p700000:r0001", demo_runs, tmp_path, monkeypatch)
    expected = write_demo_run(Path(demo_runs["spectra"]).parent)["transition_train"]  # existing run: info only
    nb = nbformat.read(NOTEBOOK.with_name("spectra_classification.ipynb"), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = outputs(nb)
    changed = int(text.split("the sample changed phase at train ")[1].split()[0])
    assert abs(changed - expected) <= 2
    assert (tmp_path / "models" / "phase-transition.spectra").is_dir()
