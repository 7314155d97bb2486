"""The example notebooks run, top to bottom, on a session like the spawner makes.

Each notebook runs in a real kernel (nbclient) whose server is a real Jupyter
server with the daas extension, laid out as the local spawner does it:
``<root>/data/<slug>`` links to the dataset, ``DAAS_SESSION`` names the
manifest, and the kernel finds the server through ``DAAS_API_URL``. Any
error in any cell fails the test.
"""

import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from hub_ext.catalogs import Dataset
from hub_ext.demo.command import DEMO_ENVIRONMENTS, demo_catalog
from hub_ext.environments import parse_environments
from server_ext.extension.serverprocess import JupyterServerProcess

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
TOKEN = "daas-notebook-token"


@pytest.fixture
def session_for(demo_runs, tmp_path, monkeypatch):
    """``session_for(pid)``: root, manifest and a server with the extension; the kernel's environment."""
    servers = []

    def start(pid, env_slug=None, with_server=True):
        record = next(d for d in demo_catalog(demo_runs)["datasets"] if d["pid"] == pid)
        dataset = Dataset.from_dict(record)
        envs = parse_environments(DEMO_ENVIRONMENTS["environments"])
        env = next((e for e in envs if e.slug == env_slug), envs[0])
        root = tmp_path / "home"
        (root / "data").mkdir(parents=True)
        (root / "data" / dataset.slug).symlink_to(dataset.path, target_is_directory=True)
        manifest = tmp_path / "session.json"
        manifest.write_text(json.dumps({"dataset": dataset.to_dict(), "environment": env.to_dict(),
                                        "dataset_path": str(root / "data" / dataset.slug)}))
        monkeypatch.setenv("DAAS_SESSION", str(manifest))
        for var in ("DAAS_API_URL", "DAAS_API_TOKEN", "JUPYTERHUB_SERVICE_URL", "JUPYTERHUB_API_TOKEN"):
            monkeypatch.delenv(var, raising=False)
        if with_server:
            server = JupyterServerProcess(root, token=TOKEN, env={
                "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
                "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),
                "OMP_NUM_THREADS": "1"},
                options={"DaasExtension.dask_workers": 1, "DaasExtension.dask_threads_per_worker": 1},
                log_path=tmp_path / "server.log")
            servers.append(server)
            server.start()
            monkeypatch.setenv("DAAS_API_URL", server.api_url)
            monkeypatch.setenv("DAAS_API_TOKEN", TOKEN)
        return root

    yield start
    for server in servers:
        server.stop()


def run_notebook(name, root, timeout=300):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name} is stored with outputs"
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(root)}}).execute()
    return nb


def outputs(nb):
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def widget_views(nb):
    """Model ids of the widgets the notebook displayed."""
    return [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
            for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]


def images(nb):
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.parametrize("pid,expected", [
    ("xfel:p002120:r0029", ["Lysozyme SFX", "SPB_DET_AGIPD1M-1/DET/0CH0", "SPB_XTD9_XGM/DOOCS/MAIN"]),
    ("petra:p02.1:11054321", ["LaB6", "Not an EuXFEL run directory", "entry/data/data"]),
])
def test_explore_notebook_runs(pid, expected, session_for):
    root = session_for(pid, with_server=False)
    nb = run_notebook("explore_dataset.ipynb", root, timeout=120)
    text = outputs(nb)
    for needle in expected:
        assert needle in text
    assert images(nb) == 1  # the plot


@pytest.mark.parametrize("pid,suggested", [
    ("xfel:p002120:r0029", "nxmx_conversion.ipynb"),
    ("petra:p02.1:11054321", "explore_dataset.ipynb"),
])
def test_getting_started_says_what_is_where(pid, suggested, session_for):
    root = session_for(pid)
    text = outputs(run_notebook("getting_started.ipynb", root, timeout=120))
    assert f"mounted at  {root / 'data'}" in text
    assert "jobs run on: embedded LocalCluster" in text and "conversions so far: 0" in text
    assert f"Open {suggested}" in text


def test_getting_started_without_the_service_says_so(session_for):
    root = session_for("xfel:p002120:r0029", with_server=False)
    text = outputs(run_notebook("getting_started.ipynb", root, timeout=120))
    assert "The analysis service is not available here: no DAAS_API_URL" in text


@pytest.mark.parametrize("pid", ["xfel:p002120:r0029", "xfel:p002121:r0012"])
def test_nxmx_notebook_converts_the_demo_runs(pid, session_for):
    from server_ext.nxmx.demo import LYSOZYME_CELL
    from server_ext.nxmx.dials import dials_available

    root = session_for(pid)
    nb = run_notebook("nxmx_conversion.ipynb", root, timeout=600)
    text = outputs(nb)
    assert "compliant (0 errors" in text
    slug = pid.replace(":", "-")
    assert (root / "processed" / f"{slug}.nxs").exists()
    assert len(widget_views(nb)) == 1 and images(nb) == 1  # the converter widget, the frame
    if not dials_available():
        assert "DIALS is not available" in text
    elif pid == "xfel:p002120:r0029":
        # the AGIPD run's stills of the first train index as lysozyme, the cell not given
        found = re.search(r"DIALS: 4 images, \d+ spots \((\d+) per image\), (\d) indexed; median cell ([\d., ]+)",
                          text)
        assert found and int(found[1]) >= 100 and int(found[2]) >= 3, text
        cell = [float(v) for v in found[3].split(",")]
        assert len(cell) == 6, found[3]
        # DIALS orders a, b, c its own way; the angles of a tetragonal cell are all 90
        np.testing.assert_allclose(sorted(cell[:3]), sorted(LYSOZYME_CELL[:3]), rtol=0.01)
        np.testing.assert_allclose(cell[3:], LYSOZYME_CELL[3:], rtol=0.01)
    else:  # the JUNGFRAU run holds noise only: said so, not DIALS' traceback
        assert "DIALS could not process these frames: dials.find_spots found no spots on the images" in text


def test_spectra_notebook_finds_the_transition(demo_runs, session_for):
    from server_ext.spectra.synthetic import write_demo_run

    root = session_for("xfel:p700000:r0001")
    expected = write_demo_run(Path(demo_runs["spectra"]).parent)["transition_train"]  # existing run: info only
    nb = run_notebook("spectra_classification.ipynb", root, timeout=600)
    text = outputs(nb)
    changed = int(text.split("the sample changed phase at train ")[1].split()[0])
    assert abs(changed - expected) <= 2
    assert "classes told apart by peak position: none" in text and "strain alignment: " in text
    # each bin's points, and where it lies in 2-theta (the demo's axis spans 10-90 degrees)
    spans = re.findall(r"points +\d+- *\d+  twoTheta (\d+\.\d+)-(\d+\.\d+)  weight", text)
    assert spans and all(10 <= float(lo) < float(hi) <= 90 for lo, hi in spans), text
    # scored on the second and the fourth fifth of the run, which training never saw: 40 trains of 8 pulses each
    correct, scored = map(int, text.split("\naccuracy ")[1].split("(")[1].split(" spectra)")[0].split(" of "))
    assert scored == 2 * 40 * 8 and correct >= 0.98 * scored, text
    assert "rows: labelled, columns: predicted" in text
    # a pixel pair masked after training: refused, named, then bridged (the last trains are "after")
    assert "points [700, 701] are NaN or inf in every spectrum" in text
    assert "(array(['after']" in text
    assert (root / "models" / "phase-transition.spectra").is_dir()
    # every pulse's label kept, and the pulses surely "after" picked from the file
    pulses = int(text.split(" pulses kept in results/phase-transition-labels.h5 (finished)")[0].split()[-1])
    assert pulses == 200 * 8
    first_after = int(text.split("pulses surely 'after', from train ")[1].split()[0])
    assert expected <= first_after <= expected + 15  # none before the transition; mixtures at it
    phases = [line.split(": ")[1] for line in text.splitlines() if line.startswith("  trains ")]
    assert phases[0] == "before" and phases[-1] == "after", phases
    assert len(widget_views(nb)) == 1 and images(nb) == 2  # the app; separability figure, stream plot
