"""Hub-side REST endpoints: the options form's dataset picker, proposal sharing.

``GET /hub/api/daas/datasets?q=&facility=&offset=&limit=&user=&server=``
answers one page of the datasets the target user may see, as JSON;
``/hub/api/daas/shares/...`` shares a session with the dataset's proposal team
(:mod:`hub_ext.sharing`). Register them in ``jupyterhub_config.py``::

    from hub_ext.handlers import default_handlers
    c.JupyterHub.extra_handlers = default_handlers
"""

import json

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from . import sharing
from .catalogs import CatalogError


class DatasetSearchHandler(APIHandler):
    async def get(self):
        current = self.current_user
        if current is None:
            raise web.HTTPError(403, "Log in to search datasets.")
        name = self.get_argument("user", current.name)
        if name != current.name and not getattr(current, "admin", False):
            raise web.HTTPError(403, "You may only search datasets for your own servers.")
        user = self.find_user(name)
        if user is None:
            raise web.HTTPError(404, f"No such user: {name}")
        server = self.get_argument("server", "")
        if server not in user.orm_spawners:
            raise web.HTTPError(404, "No such server.")
        spawner = user.get_spawner(server)
        if not hasattr(spawner, "search_datasets"):
            raise web.HTTPError(404, "This hub's spawner has no dataset catalogue.")
        try:
            offset = int(self.get_argument("offset", "0"))
            limit = int(self.get_argument("limit", "0")) or None
        except ValueError:
            raise web.HTTPError(400, "offset and limit must be integers.") from None
        try:
            page = await spawner.search_datasets(
                query=self.get_argument("q", "")[:200],
                facility=self.get_argument("facility", ""),
                offset=offset,
                limit=limit,
            )
        except CatalogError as e:
            self.log.error("Dataset search failed: %s", e)
            raise web.HTTPError(503, "The dataset catalogue is unavailable right now; try again later.") from e
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(page.to_dict()))


default_handlers = [(r"/api/daas/datasets", DatasetSearchHandler), *sharing.default_handlers]
