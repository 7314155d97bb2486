"""A regular pip install enables the extension and sets JupyterLab's defaults: the wheel ships
the jupyter_server_config.d file and the lab settings overrides."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_the_enabling_config_and_the_openapi_file(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    str(ROOT), "-w", str(tmp_path)], check=True, timeout=300, capture_output=True)
    (wheel,) = tmp_path.glob("panosc_daas-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (config,) = [n for n in names if n.endswith("etc/jupyter/jupyter_server_config.d/panosc_daas.json")]
        assert ".data/data/" in config  # installed under sys.prefix, where jupyter looks
        enabled = json.loads(z.read(config))["ServerApp"]["jpserver_extensions"]
        assert enabled == {"server_ext.extension": True, "server_ext.desktop": True}
        assert "server_ext/extension/openapi.yaml" in names
        (lab,) = [n for n in names if n.endswith("share/jupyter/lab/settings/overrides.json")]
        assert ".data/data/" in lab
        assert json.loads(z.read(lab))["@jupyterlab/apputils-extension:notification"] == {
            "fetchNews": "false", "checkForUpdates": False}
