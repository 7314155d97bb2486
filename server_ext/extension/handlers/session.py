"""``GET session`` and ``GET runs?path=``."""

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..session import load_session
from .base import API, DaasHandler


class SessionHandler(DaasHandler):
    @web.authenticated
    @authorized
    async def get(self):
        session = load_session()
        session["root_dir"] = self.daas.policy.root_dir
        session["jobs"] = {"backend": self.daas.backend.description, "max_running": self.daas.jobs.max_running}
        self.reply(session)


class RunsHandler(DaasHandler):
    @web.authenticated
    @authorized
    async def get(self):
        from server_ext.nxmx import inspect_run

        path = self.daas.policy.input("path", self.get_query_argument("path", ""))
        summary = await self.in_thread(inspect_run, path)
        self.reply({"path": self.daas.policy.relative(path), **summary})


default_handlers = [
    (rf"{API}/session", SessionHandler),
    (rf"{API}/runs", RunsHandler),
]
