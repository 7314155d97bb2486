"""The dataset search API: a hub-managed JupyterHub service, guarded by a custom scope.

``GET <base_url>services/daas-datasets/datasets?q=&facility=&offset=&limit=&user=``
answers one page of the datasets ``user`` (default: the caller) may see, for
the picker: no storage paths, no access lists. The caller needs the scope
``custom:daas:datasets`` for that user: every user holds it for themselves
(``!user``); grant it to a service through a role to let it search for others.

Register everything in ``jupyterhub_config.py`` with::

    from hub_ext.api import configure
    configure(c, config_file=__file__, port=8090)
"""

from __future__ import annotations

import sys
from typing import Any

SERVICE_NAME = "daas-datasets"
SCOPE = "custom:daas:datasets"


def configure(c: Any, config_file: str, port: int, ip: str = "127.0.0.1", name: str = SERVICE_NAME,
              bind_ip: str = "") -> None:
    """Add the search service, its scope and roles to the hub configuration ``c``.

    ``config_file`` is this same ``jupyterhub_config.py``: the service reads
    the catalogue configuration from it. The proxy reaches the service at
    ``http://<ip>:<port>``; it listens on ``bind_ip`` (default: ``ip``), e.g.
    ``ip`` the hub's Kubernetes Service name and ``bind_ip="0.0.0.0"``.
    """
    c.JupyterHub.custom_scopes = {
        **dict(c.JupyterHub.get("custom_scopes", {}) or {}),
        SCOPE: {"description": "Search the datasets a user may access (no storage paths)."},
    }
    c.JupyterHub.services = _listed(c.JupyterHub, "services") + [{
        "name": name,
        "url": f"http://{ip}:{port}",
        "command": [sys.executable, "-m", "hub_ext.api.service", "--config", str(config_file)],
        "display": False,
        "environment": {"DAAS_API_BIND_IP": bind_ip or ip},
    }]
    c.JupyterHub.load_roles = _listed(c.JupyterHub, "load_roles") + [{
        "name": "user",
        "description": "Standard user privileges, plus searching one's own datasets",
        "scopes": ["self", f"{SCOPE}!user"],
    }, {
        "name": f"{name}-service",
        "description": "The dataset search service reads users' groups and access tokens",
        "scopes": ["read:users", "admin:auth_state"],
        "services": [name],
    }]


def _listed(section: Any, key: str) -> list:
    """A list trait's configured value as a plain list (also when only appended to so far)."""
    value = section.get(key)
    if value is None:
        return []
    if hasattr(value, "get_value"):  # traitlets' LazyConfigValue (c.X.y.append(...) before)
        return list(value.get_value([]))
    return list(value)
