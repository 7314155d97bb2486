"""Conversion jobs (``nxmx/jobs``) and validation (``nxmx/validate``)."""

from jupyter_server.auth.decorator import authorized
from tornado import web

from .. import tasks
from .base import API, DaasHandler

ID = r"(?P<job_id>[0-9a-f]{16})"


def job_view(daas, record: dict) -> dict:
    """A job record as the API shows it: result paths relative to the root directory."""
    view = dict(record)
    result = record.get("result")
    if isinstance(result, dict) and "output" in result:
        view["result"] = {**result, "output": daas.policy.relative(result["output"])}
    return view


class JobsHandler(DaasHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.reply({"jobs": [job_view(self.daas, r) for r in self.daas.jobs.list("nxmx")]})

    @web.authenticated
    @authorized
    async def post(self):
        body = self.body("ConversionRequest")
        policy = self.daas.policy
        options = dict(body)
        options["run"] = policy.input("run", body["run"])
        options["output"] = policy.output("output", body["output"])
        if body.get("geometry"):
            options["geometry"] = policy.input("geometry", body["geometry"])
        record = self.daas.jobs.submit("nxmx", body, tasks.convert, options)
        self.reply(job_view(self.daas, record), 202)


class JobHandler(DaasHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id):
        self.reply(job_view(self.daas, await self.job(job_id, "nxmx")))

    @web.authenticated
    @authorized
    async def delete(self, job_id):
        record = await self.daas.jobs.cancel(job_id, "nxmx")
        self.reply(job_view(self.daas, record), 202)


class ValidateHandler(DaasHandler):
    @web.authenticated
    @authorized
    async def post(self):
        body = self.body("ValidateRequest")
        path = self.daas.policy.input("path", body["path"])
        report = await self.on_cluster(tasks.validate, path)
        report["path"] = self.daas.policy.relative(path)
        self.reply(report)


default_handlers = [
    (rf"{API}/nxmx/jobs", JobsHandler),
    (rf"{API}/nxmx/jobs/{ID}", JobHandler),
    (rf"{API}/nxmx/validate", ValidateHandler),
]
