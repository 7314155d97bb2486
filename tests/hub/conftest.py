import os

import pytest

from hub_ext.demo.command import demo_catalog

from .hubtools import Hub


@pytest.fixture(scope="session")
def demo_hub(tmp_path_factory, demo_runs):
    """A real JupyterHub + configurable-http-proxy running the demo configuration."""
    roots = [os.path.commonpath(list(demo_runs.values()))]  # <data-dir>/datasets
    hub = Hub(tmp_path_factory.mktemp("hub"), demo_catalog(demo_runs), allowed_data_roots=roots)
    hub.start()
    yield hub
    hub.stop()
