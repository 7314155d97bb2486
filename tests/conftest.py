import pytest

from hub_ext.demo.command import ensure_demo_data


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory):
    """The demo datasets (``daas demo``'s own), generated once per test session."""
    return ensure_demo_data(tmp_path_factory.mktemp("demo-data"), log=lambda *a: None)
