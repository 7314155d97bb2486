import helm_python as helm
import pytest

from .charttools import CHART_DIR, load_values, render

#: Values files under values/ rendered by the tests (None: the chart's defaults).
VALUES_FILES = [None, "ingress-tls", "no-netpol", "scicat", "oidc", "existing-secret", "external-db", "nfs", "pvc"]


@pytest.fixture(scope="session")
def chart():
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def renders(chart):
    """Each values file rendered once per session."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = render(chart, load_values(name))
        return cache[name]

    return get


@pytest.fixture(params=VALUES_FILES, ids=lambda n: n or "defaults")
def rendered(request, renders):
    return renders(request.param)
