"""The sharing service process (started by the hub; see :func:`hub_ext.sharing.configure`).

It serves the JSON API and the Share page of :mod:`hub_ext.sharing`. Callers
are identified through the hub (``HubOAuth``: an API token in the
``Authorization`` header, or the service's own login cookie for the page,
whose write requests must carry its XSRF token). Everything else comes from
the hub's REST API, asked fresh at each request: the owner's server (is it
running, on which dataset), the groups of the owner and of the user to share
with, the members of the proposal groups, and the shares themselves, which
only the hub grants and revokes. The dataset and its proposal groups come
from the catalogue configured in the hub's ``jupyterhub_config.py``.
"""

from __future__ import annotations

import json
import logging
import os
from urllib.parse import quote

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import web
from traitlets.config import Config

from .api.service import CatalogSettings, UserDirectory, log_request, main as run_service, scope_allows
from .catalogs import CatalogError
from .catalogs.base import user_access_token
from .sharing import SCOPE, ShareRefused, check_member, proposal_groups
from .spawners.base import _jinja

log = logging.getLogger("daas.sharing")
UNAVAILABLE = "The hub is not answering right now; try again later."


class _ShareHandler(HubOAuthenticated, web.RequestHandler):
    """What the API and the page share: who calls, and the session they may manage."""

    # Scopes are checked per request (filters included), not by HubAuthenticated.
    hub_scopes = None

    @property
    def allow_all(self):
        return True

    @property
    def hub(self) -> UserDirectory:
        return self.settings["daas"]["hub"]

    async def prepare(self):
        # identify once, without blocking the loop (cookie: the XSRF check for writes is HubOAuth's)
        self._hub_auth_user_cache = await self.hub_auth.get_user(self, sync=False)

    async def hub_call(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        try:
            return await self.hub.call(method, path, body)
        except CatalogError as e:
            log.error("%s", e)
            raise ShareRefused(503, UNAVAILABLE) from e

    async def user_model(self, name: str, **params: str) -> dict | None:
        try:
            return await self.hub.get(name, **params)
        except CatalogError as e:
            log.error("%s", e)
            raise ShareRefused(503, UNAVAILABLE) from e

    async def session(self, owner: str, server: str) -> tuple[dict, dict]:
        """``owner``'s model and server ``server``'s, if the caller may share it."""
        caller = self.current_user
        if caller is None:
            raise ShareRefused(403, "Log in to share a session.")
        model = await self.user_model(owner, include_stopped_servers="1")
        if model is None or not scope_allows(caller.get("scopes", []), owner, model.get("groups", []), SCOPE):
            raise ShareRefused(403, "Only the session's owner can share it.")
        spawner = (model.get("servers") or {}).get(server)
        if spawner is None:
            raise ShareRefused(404, "No such session.")
        return model, spawner

    async def proposal(self, owner: dict, spawner: dict) -> tuple[object, set[str]]:
        """The running session's dataset and its proposal groups; :class:`ShareRefused` says why not."""
        if not spawner.get("ready"):
            raise ShareRefused(409, "Start the session before sharing it.")
        pid = (spawner.get("user_options") or {}).get("dataset")
        settings = self.settings["daas"]["spawner"]
        state = owner.get("auth_state") or {}
        user_access_token.set(state.get("access_token") if isinstance(state, dict) else None)
        try:
            dataset = pid and await settings.catalog.get(
                pid, sorted(owner.get("groups", [])),
                see_all=bool(settings.admin_sees_all_datasets and owner.get("admin")))
        except CatalogError as e:
            log.error("Catalogue unavailable while sharing %s/%s: %s", owner["name"], spawner.get("name", ""), e)
            raise ShareRefused(503, "The dataset catalogue is unavailable right now; try again later.") from e
        if not dataset:
            raise ShareRefused(409, "This session's dataset is not in the catalogue any more; it cannot be shared.")
        groups = proposal_groups(dataset)
        if not groups:
            raise ShareRefused(403, f"Dataset {dataset.pid!r} has no proposal group, so its sessions cannot be shared.")
        return dataset, groups

    async def shared_with(self, owner: str, server: str) -> list[dict]:
        code, body = await self.hub_call("GET", f"/shares/{quote(owner, safe='')}/{quote(server, safe='')}")
        if code != 200:
            raise ShareRefused(404, "No such session.")
        items = body.get("items", []) if isinstance(body, dict) else body  # paginated or not
        return [{"user": s["user"]["name"], "created_at": s["created_at"]} for s in items if s.get("user")]

    async def members(self, groups: set[str]) -> list[str]:
        """Names of the hub users in any of ``groups``, sorted: those a share may go to."""
        names = set()
        for group in sorted(groups):
            code, body = await self.hub_call("GET", f"/groups/{quote(group, safe='')}")
            if code == 200:
                names.update(body.get("users", []))
        return sorted(names)


class ProposalShareHandler(_ShareHandler):
    """The JSON API: list, grant (after the membership check), revoke."""

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        message = exc.message if isinstance(exc, ShareRefused) else (getattr(exc, "log_message", None) or self._reason)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

    async def _target(self, name) -> dict:
        if not isinstance(name, str) or not name:
            raise ShareRefused(400, 'Say whom to share with: {"user": "<name>"}.')
        target = await self.user_model(name)
        if target is None:
            raise ShareRefused(404, f"No such user: {name[:100]}")
        return target

    def _body(self) -> dict:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise ShareRefused(400, "The request body is not JSON.") from None
        if not isinstance(body, dict):
            raise ShareRefused(400, 'Say whom to share with: {"user": "<name>"}.')
        return body

    def _path(self, owner: str, server: str) -> str:
        return f"/shares/{quote(owner, safe='')}/{quote(server, safe='')}"

    async def get(self, owner: str, server: str = ""):
        await self.session(owner, server)
        self.finish(json.dumps({"server": f"{owner}/{server}", "shares": await self.shared_with(owner, server)}))

    async def post(self, owner: str, server: str = ""):
        model, spawner = await self.session(owner, server)
        target = await self._target(self._body().get("user"))
        if target["name"] == owner:
            raise ShareRefused(400, "You already own this session.")
        dataset, groups = await self.proposal(model, spawner)
        check_member(dataset, groups, target["name"], target.get("groups", []))
        scopes = [f"access:servers!server={owner}/{server}"]
        code, share = await self.hub_call("POST", self._path(owner, server), {"user": target["name"], "scopes": scopes})
        if code != 200:
            log.error("The hub refused to share %s/%s with %s: %s %s", owner, server, target["name"], code, share)
            raise ShareRefused(502, "The hub refused this share; ask an administrator to check the hub's log.")
        log.info("%s shared %s/%s with %s", self.current_user["name"], owner, server, target["name"])
        self.finish(json.dumps({"user": target["name"], "scopes": sorted(share["scopes"])}))

    async def delete(self, owner: str, server: str = ""):
        await self.session(owner, server)
        target = await self._target(self.get_argument("user", ""))
        code, body = await self.hub_call("PATCH", self._path(owner, server), {"user": target["name"]})
        if code != 200:
            log.error("The hub refused to revoke %s's access to %s/%s: %s %s", target["name"], owner, server, code, body)
            raise ShareRefused(502, "The hub refused this revocation; ask an administrator to check the hub's log.")
        log.info("%s revoked %s's access to %s/%s", self.current_user["name"], target["name"], owner, server)
        self.set_status(204)
        self.finish()


class SharePageHandler(_ShareHandler):
    """The Share page: who may be granted the session and who has it. Every check is the API's."""

    @web.authenticated
    async def get(self, owner: str, server: str = ""):
        prefix = self.settings["daas"]["prefix"]
        ns = {
            "owner": owner, "session_name": server, "problem": None,
            "found": False, "dataset": None, "members": [], "shares": [],
            "api_url": url_path_join(prefix, "api/shares", owner) + "/" + server,  # ".../dana/" for ""
            "xsrf_token": self.xsrf_token.decode() if isinstance(self.xsrf_token, bytes) else self.xsrf_token,
            "hub_prefix": self.hub_auth.hub_prefix, "user": self.current_user["name"],
        }
        try:
            model, spawner = await self.session(owner, server)
            ns["found"] = True
            ns["shares"] = sorted(s["user"] for s in await self.shared_with(owner, server))
            dataset, groups = await self.proposal(model, spawner)
        except ShareRefused as e:
            self.set_status(e.status_code)
            ns["problem"] = e.message
        else:
            ns["dataset"] = dataset.pid
            ns["members"] = [m for m in await self.members(groups) if m != owner]
        self.set_header("Cache-Control", "no-store")
        self.finish(_jinja.get_template("share.html").render(**ns))


def make_app(config: Config) -> web.Application:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/daas-share/")
    # the handlers' HubOAuth is the singleton: made here, it is this one
    hub_auth = HubOAuth.instance(cache_max_age=0)  # every request sees the hub's current answer
    return web.Application(
        [
            # the service's own address (the hub's health check, a trimmed link) leads home,
            # where each session's Share link is
            (prefix, web.RedirectHandler, {"url": url_path_join(hub_auth.hub_prefix, "home"), "permanent": False}),
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
            (url_path_join(prefix, r"api/shares/([^/]+)/([^/]*)"), ProposalShareHandler),
            (url_path_join(prefix, r"([^/]+)/([^/]*)"), SharePageHandler),
        ],
        hub_auth=hub_auth,
        log_function=log_request,
        cookie_secret=os.urandom(32),
        daas={"spawner": CatalogSettings(config=config), "prefix": prefix,
              "hub": UserDirectory(hub_auth.api_url, hub_auth.api_token, ttl=0)},
    )


def main(argv=None) -> None:
    run_service(argv, make_app=make_app, what="sharing service")


if __name__ == "__main__":
    main()
