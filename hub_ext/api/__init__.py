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
    add_service(
        c, name=name, module="hub_ext.api.service", config_file=config_file, port=port, ip=ip, bind_ip=bind_ip,
        scope=SCOPE, scope_description="Search the datasets a user may access (no storage paths).",
        service_scopes=["read:users", "admin:auth_state"],
        service_role_description="The dataset search service reads users' groups and access tokens",
    )


def add_service(c: Any, *, name: str, module: str, config_file: str, port: int, ip: str, bind_ip: str,
                scope: str, scope_description: str, service_scopes: list[str], service_role_description: str,
                user_scopes: tuple[str, ...] = (), **service: Any) -> None:
    """Register a hub-managed service ``python -m module --config config_file`` with its custom ``scope``.

    Every user holds ``scope`` for themselves (``!user``, added to the
    ``user`` role, which several services share), plus ``user_scopes``; the
    service's own role grants it ``service_scopes``. ``service`` adds keys to its entry in
    ``c.JupyterHub.services`` (e.g. ``oauth_client_allowed_scopes``).
    """
    c.JupyterHub.custom_scopes = {
        **dict(c.JupyterHub.get("custom_scopes", {}) or {}),
        scope: {"description": scope_description},
    }
    c.JupyterHub.services = _listed(c.JupyterHub, "services") + [{
        "name": name,
        "url": f"http://{ip}:{port}",
        "command": [sys.executable, "-m", module, "--config", str(config_file)],
        "display": False,
        "environment": {"DAAS_API_BIND_IP": bind_ip or ip},
        **service,
    }]
    roles = _listed(c.JupyterHub, "load_roles")
    user_role = next((r for r in roles if r.get("name") == "user"), None)
    if user_role is None:
        user_role = {"name": "user", "description": "Standard user privileges, plus the panosc-daas services",
                     "scopes": ["self"]}
        roles.append(user_role)
    user_role["scopes"] = [*user_role["scopes"], f"{scope}!user", *user_scopes]
    roles.append({"name": f"{name}-service", "description": service_role_description,
                  "scopes": service_scopes, "services": [name]})
    c.JupyterHub.load_roles = roles


def _listed(section: Any, key: str) -> list:
    """A list trait's configured value as a plain list (also when only appended to so far)."""
    value = section.get(key)
    if value is None:
        return []
    if hasattr(value, "get_value"):  # traitlets' LazyConfigValue (c.X.y.append(...) before)
        return list(value.get_value([]))
    return list(value)
