"""What every handler shares: authorization on the ``daas`` resource, JSON bodies, engine calls."""

from __future__ import annotations

import asyncio
import json

from jupyter_server.base.handlers import APIHandler

from ..client import MAX_WAIT
from ..errors import DaasRequestError
from ..schema import parse_body

AUTH_RESOURCE = "daas"
API = "/daas/api"


class DaasHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def daas(self):
        return self.settings["daas"]

    def body(self, schema: str) -> dict:
        return parse_body(self.request.body, schema)

    def wait_seconds(self) -> float:
        """The ``wait`` query argument: seconds to wait for a job's end (0, the default: answer now)."""
        raw = self.get_query_argument("wait", "0")
        try:
            seconds = float(raw)
        except ValueError:
            seconds = float("nan")
        if not 0 <= seconds <= MAX_WAIT:  # NaN fails both
            raise DaasRequestError(400, f"wait={raw!r}: give the seconds to wait for the job's end, "
                                        f"from 0 to {MAX_WAIT:g}")
        return seconds

    async def job(self, job_id: str, kind: str) -> dict:
        """The job record, once it is final if the request asks to wait (``?wait=seconds``)."""
        return await self.daas.jobs.wait_final(job_id, kind, self.wait_seconds())

    def reply(self, value, status: int = 200):
        self.set_status(status)
        self.finish(json.dumps(value))

    async def in_thread(self, fn, *args):
        """Run a short engine call off the event loop; its user errors become 400s."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self.daas.executor, fn, *args),
                                          self.daas.request_timeout)
        except asyncio.TimeoutError:
            raise DaasRequestError(504, f"no answer within {self.daas.request_timeout:g} s; try again later")
        except Exception as e:
            raise as_request_error(e)

    async def on_cluster(self, fn, *args):
        """Run an engine call on a Dask worker and wait for it; its user errors become 400s."""
        try:
            return await self.daas.backend.call(fn, *args, timeout=self.daas.request_timeout)
        except asyncio.TimeoutError:
            raise DaasRequestError(504, f"no answer within {self.daas.request_timeout:g} s; try again later")
        except Exception as e:
            raise as_request_error(e)


def as_request_error(error: BaseException) -> BaseException:
    from ..jobs import describe_error

    if isinstance(error, DaasRequestError):
        return error
    if getattr(error, "user_error", False):
        return DaasRequestError(400, str(error))
    return DaasRequestError(500, describe_error(error))
