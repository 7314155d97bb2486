import socket

import pytest

from hub_ext.demo import ensure_demo_data


def free_port():
    """An ephemeral TCP port on 127.0.0.1 (closed again, so the caller can bind it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port():
    return free_port()


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory):
    """The demo datasets (``daas demo``'s own), generated once per test session."""
    return ensure_demo_data(tmp_path_factory.mktemp("demo-data"), log=lambda *a: None)
