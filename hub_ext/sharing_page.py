"""The hub page where a session's owner shares it with her proposal team.

``GET /hub/daas/share/{owner}/{server}`` (``{server}`` empty for the default
server) lists who may be granted the session (the members of its dataset's
proposal groups, owner excluded) and who has it now; its Grant and Revoke
buttons call the JSON API of :mod:`hub_ext.sharing`, which decides. The page
only shows: every check is the API's.
"""

from __future__ import annotations

from jinja2 import ChoiceLoader, FileSystemLoader
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.utils import url_path_join
from tornado import web

from .sharing import OwnedSession, ShareRefused, proposal_members, session_proposal
from .sharing import default_handlers as api_handlers
from .spawners.base import TEMPLATES


class SharePageHandler(OwnedSession, BaseHandler):
    def get_template(self, name, sync=False):
        # Our templates first, then the hub's (for page.html), without touching the hub's configuration.
        key = "daas_jinja2_env_sync" if sync else "daas_jinja2_env"
        if key not in self.settings:
            hub_env = self.settings[key.replace("daas_", "")]
            self.settings[key] = hub_env.overlay(loader=ChoiceLoader([FileSystemLoader(TEMPLATES), hub_env.loader]))
        return self.settings[key].get_template(name)

    @web.authenticated
    async def get(self, owner: str, server: str = ""):
        ns = {
            "owner": owner, "session_name": server, "problem": None,
            "found": False, "dataset": None, "members": [], "shares": [],
            "api_url": url_path_join(self.hub.base_url, "api/daas/shares", owner) + "/" + server,  # ".../dana/" for ""
        }
        try:
            spawner = self._spawner(owner, server)
            ns["found"] = True
            ns["shares"] = sorted(s.user.name for s in spawner.orm_spawner.shares if s.user is not None)
            dataset, groups = await session_proposal(spawner)
        except ShareRefused as e:
            self.set_status(e.status_code)
            ns["problem"] = e.message
        except web.HTTPError as e:
            self.set_status(e.status_code)
            ns["problem"] = e.log_message
        else:
            ns["dataset"] = dataset.pid
            ns["members"] = [m for m in proposal_members(self.db, groups) if m != owner]
        self.finish(await self.render_template("share.html", **ns))


# The page and the API it calls: what a hub configuration adds to c.JupyterHub.extra_handlers.
default_handlers = [*api_handlers, (r"/daas/share/([^/]+)/([^/]*)", SharePageHandler)]
