"""The session manifest written by the spawner (``DAAS_SESSION``)."""

from __future__ import annotations

import json
import os


def load_session(environ=os.environ) -> dict:
    """This server's manifest, or an empty session (``{"dataset": None, ...}``).

    A manifest that cannot be read is reported in ``error`` rather than
    failing the server: the scientist still gets a working notebook.
    """
    empty = {"dataset": None, "dataset_path": environ.get("DAAS_DATASET_PATH") or None,
             "environment": None}
    path = environ.get("DAAS_SESSION")
    if not path:
        return empty
    try:
        with open(path) as f:
            manifest = json.load(f)
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        return {**empty, "error": f"session manifest {path} cannot be read: {e}"}
    return {**empty, **manifest}
