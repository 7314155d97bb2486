"""The dataset search service process (started by the hub; see :func:`hub_ext.api.configure`).

It reads the hub's own ``jupyterhub_config.py`` for the catalogue settings
(``c.FacilitySpawner.catalog_class``, ``c.YamlCatalog``, ``c.FederatedCatalog``,
...), identifies each caller through the hub (``HubAuth``: token in the
``Authorization`` header), requires the ``custom:daas:datasets`` scope for the
target user, and asks the hub for that user's groups (and access token, for
backends that query on the user's behalf).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
from pathlib import Path
from urllib.parse import quote, urlparse

from jupyterhub.services.auth import HubAuth, HubAuthenticated
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from traitlets.config import Config, PyFileConfigLoader

from ..catalogs import CatalogError
from ..catalogs.base import user_access_token
from ..catalogs.cache import TTLCache
from ..spawners.base import FacilitySpawner, shared_catalog
from . import SCOPE

log = logging.getLogger("daas.api")


def scope_allows(scopes, user: str, groups, wanted: str = SCOPE) -> bool:
    """True when ``scopes`` (a token's, expanded) hold ``wanted`` for ``user`` (who is in ``groups``)."""
    groups = set(groups)
    for scope in scopes:
        base, _, filt = scope.partition("!")
        if base != wanted:
            continue
        if not filt:
            return True
        kind, _, value = filt.partition("=")
        if (kind == "user" and value == user) or (kind == "group" and value in groups):
            return True
    return False


class UserDirectory:
    """The hub's REST API for a service: users' groups, admin flag and access token (briefly cached)."""

    def __init__(self, hub_api_url: str, token: str, ttl: float = 10.0):
        self.url = hub_api_url.rstrip("/")
        self.token = token
        self._cache = TTLCache(ttl, 4096)
        # its own connections: a catalogue backend that hangs cannot starve them
        self._http = AsyncHTTPClient(force_instance=True, max_clients=20)

    async def call(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        """``(status, decoded JSON body or None)`` of one hub API request; unreachable hub: CatalogError."""
        request = HTTPRequest(
            f"{self.url}{path}", method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            body=None if body is None else json.dumps(body),
            allow_nonstandard_methods=True, request_timeout=10, connect_timeout=5,
        )
        response = await self._http.fetch(request, raise_error=False)
        if response.code >= 500 or response.code == 599:
            raise CatalogError(f"The hub did not answer {method} {path} ({response.code})")
        return response.code, (json.loads(response.body) if response.body else None)

    async def get(self, name: str, **params: str) -> dict | None:
        """User ``name``'s model (None if unknown)."""
        key = (name, tuple(sorted(params.items())))
        hit, model = self._cache.get(key)
        if hit:
            return model
        query = "?" + "&".join(f"{k}={quote(v)}" for k, v in sorted(params.items())) if params else ""
        code, model = await self.call("GET", f"/users/{quote(name, safe='')}{query}")
        if code == 404:
            model = None
        elif code != 200:
            raise CatalogError(f"The hub did not answer for user {name} ({code})")
        self._cache.put(key, model)
        return model


class DatasetSearchHandler(HubAuthenticated, web.RequestHandler):
    """``GET .../datasets``: one page of the target user's datasets, picker fields only."""

    # Scopes are checked in get() (filters included), not by HubAuthenticated,
    # whose check would demand the unfiltered scope.
    hub_scopes = None

    @property
    def allow_all(self):
        return True

    def check_xsrf_cookie(self):
        # Token-authenticated only (no cookie sessions here): nothing to forge.
        return

    def write_error(self, status_code, **kwargs):
        self.set_header("Content-Type", "application/json")
        reason = getattr(kwargs.get("exc_info", (None, None))[1], "log_message", None) or self._reason
        self.finish(json.dumps({"status": status_code, "message": reason}))

    async def get(self):
        caller = await self.hub_auth.get_user(self, sync=False)
        if not caller:
            raise web.HTTPError(403, "A token with the custom:daas:datasets scope is required.")
        settings = self.settings["daas"]
        name = self.get_argument("user", "") or (caller["name"] if caller.get("kind", "user") == "user" else "")
        if not name:
            raise web.HTTPError(400, "Name the user whose datasets to search (?user=).")
        try:
            if name == caller.get("name") and "groups" in caller and not settings["needs_directory"]:
                target = caller  # the picker's token reads its own groups: no second hub call
            else:
                target = await settings["users"].get(name)
        except CatalogError as e:
            log.error("%s", e)
            raise web.HTTPError(503, "The hub is not answering right now; try again later.") from e
        if target is None or not scope_allows(caller.get("scopes", []), name, target.get("groups", [])):
            # unknown and forbidden look the same
            raise web.HTTPError(403, f"This token may not search the datasets of {name!r}.")
        try:
            offset = int(self.get_argument("offset", "0"))
            limit = int(self.get_argument("limit", "0")) or settings["page_size"]
        except ValueError:
            raise web.HTTPError(400, "offset and limit must be integers.") from None
        state = target.get("auth_state") or {}
        user_access_token.set(state.get("access_token") if isinstance(state, dict) else None)
        spawner_settings = settings["spawner"]
        try:
            page = await spawner_settings.catalog.search(
                sorted(target.get("groups", [])),
                query=self.get_argument("q", "")[:200],
                facility=self.get_argument("facility", "")[:200],
                offset=offset,
                limit=limit,
                see_all=bool(spawner_settings.admin_sees_all_datasets and target.get("admin")),
            )
        except CatalogError as e:
            log.error("Dataset search failed: %s", e)
            raise web.HTTPError(503, "The dataset catalogue is unavailable right now; try again later.") from e
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps(page.picker_dict()))


def log_request(handler: web.RequestHandler) -> None:
    """Tornado's access log, with successful requests at debug level: one line per keystroke of
    every picker cost the service a measurable share of its time under load."""
    status = handler.get_status()
    level = logging.DEBUG if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    access = logging.getLogger("tornado.access")
    if access.isEnabledFor(level):
        access.log(level, "%d %s %.2fms", status, handler._request_summary(), 1000.0 * handler.request.request_time())


class CatalogSettings(FacilitySpawner):
    """The FacilitySpawner configuration, read outside a spawner (no user)."""

    @property
    def catalog(self):
        return shared_catalog(self.catalog_class, self.config, log)


def load_hub_config(path: str) -> Config:
    path = Path(path).resolve()
    return PyFileConfigLoader(path.name, str(path.parent)).load_config()


def make_app(config: Config) -> web.Application:
    spawner = CatalogSettings(config=config)
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/daas-datasets/")
    # Identities and groups are reused for a few seconds: the picker sees a
    # membership change that late at most (starting a server re-checks in the hub).
    # the handlers' HubAuth is the singleton (HubAuthenticated.hub_auth): made here, it is this one
    hub_auth = HubAuth.instance(cache_max_age=10)
    users = UserDirectory(hub_auth.api_url, hub_auth.api_token)
    return web.Application(
        [(url_path_join(prefix, "datasets"), DatasetSearchHandler)],
        hub_auth=hub_auth,
        log_function=log_request,
        daas={"spawner": spawner, "users": users, "page_size": spawner.search_page_size,
              "needs_directory": spawner.admin_sees_all_datasets or _wants_user_tokens(config)},
    )


def _wants_user_tokens(config: Config) -> bool:
    """Whether a catalogue queries on the user's behalf (then auth_state comes from the hub)."""
    if config.get("SciCatCatalog", {}).get("on_behalf_of_user"):
        return True
    backends = config.get("FederatedCatalog", {}).get("backends", [])
    return any(isinstance(b, dict) and (b.get("config") or {}).get("on_behalf_of_user") for b in backends)


def main(argv=None, make_app=make_app, what: str = "dataset search service") -> None:
    """Run a hub-managed service app made from the hub's configuration, until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=f"panosc-daas {what} (started by JupyterHub)")
    parser.add_argument("--config", required=True, help="the hub's jupyterhub_config.py")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    app = make_app(load_hub_config(args.config))
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8090"))

    async def serve():
        server = HTTPServer(app, xheaders=True)
        server.listen(url.port or 80, os.environ.get("DAAS_API_BIND_IP") or url.hostname or "127.0.0.1")
        log.info("panosc-daas %s on %s", what, url.geturl())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.stop()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
