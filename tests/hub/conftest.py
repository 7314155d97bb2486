import pytest

from hub_ext.demo import demo_catalog, ensure_demo_data

from .hubtools import Hub


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory):
    """The demo datasets, generated once per test session."""
    return ensure_demo_data(tmp_path_factory.mktemp("demo-data"), log=lambda *a: None)


@pytest.fixture(scope="session")
def demo_hub(tmp_path_factory, demo_runs):
    """A real JupyterHub + configurable-http-proxy running the demo configuration."""
    roots = [str(next(iter(demo_runs.values()))).split("/datasets/")[0] + "/datasets"]
    hub = Hub(tmp_path_factory.mktemp("hub"), demo_catalog(demo_runs), allowed_data_roots=roots)
    hub.start()
    yield hub
    hub.stop()
