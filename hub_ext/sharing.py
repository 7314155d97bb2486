"""Share a running session (notebooks and desktop) with the dataset's proposal team.

JupyterHub 5's own sharing (``orm.Share``, the ``shares`` scopes) does the
granting, the checking of every request to the shared server and the
revoking. What it cannot know is who may receive a share: here, only members
of the session dataset's proposal group (one of its ``access_groups``). So
users are *not* given JupyterHub's ``shares`` scope (the default ``user``
role has none); they share through this handler, which checks membership on
the hub before it grants:

``GET    /hub/api/daas/shares/{owner}/{server}``              who has access
``POST   /hub/api/daas/shares/{owner}/{server}  {"user": u}``  grant ``u`` access
``DELETE /hub/api/daas/shares/{owner}/{server}?user=u``       revoke (204)

``{server}`` is empty for the default server (``.../shares/alice/``). The
caller needs the ``servers`` scope on that server (its owner has it).
"""

from __future__ import annotations

import json

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from .catalogs import CatalogError


class ShareRefused(web.HTTPError):
    """A share that must not be granted; the message says why, for the user."""

    user_error = True

    def __init__(self, status: int, message: str):
        super().__init__(status, log_message=message.replace("%", "%%"))
        self.message = message


def proposal_groups(dataset) -> set[str]:
    """The groups whose members may join a session on ``dataset``."""
    return set(dataset.access_groups or ())


async def session_proposal(spawner) -> tuple[object, set[str]]:
    """The running session's dataset and its proposal groups; :class:`ShareRefused` says why not."""
    if not hasattr(spawner, "catalog"):
        raise ShareRefused(400, "This hub's spawner has no dataset catalogue; sessions cannot be shared by proposal.")
    if not spawner.ready:
        raise ShareRefused(409, "Start the session before sharing it.")
    pid = (spawner.user_options or {}).get("dataset")
    try:
        dataset = pid and await spawner.catalog.get(pid, spawner.user_groups(), see_all=spawner.sees_all_datasets())
    except CatalogError as e:
        spawner.log.error("Catalogue unavailable while sharing %s: %s", spawner._log_name, e)
        raise ShareRefused(503, "The dataset catalogue is unavailable right now; try again later.") from e
    if not dataset:
        raise ShareRefused(409, "This session's dataset is not in the catalogue any more; it cannot be shared.")
    groups = proposal_groups(dataset)
    if not groups:
        raise ShareRefused(403, f"Dataset {dataset.pid!r} has no proposal group, so its sessions cannot be shared.")
    return dataset, groups


def check_member(dataset, groups: set[str], target) -> None:
    """Refuse ``target`` (a hub user) unless one of ``groups`` holds it."""
    if not groups & {g.name for g in target.groups}:
        raise ShareRefused(
            403,
            f"{target.name} is not a member of the proposal of dataset {dataset.pid!r}; "
            "only members of its group can join this session.",
        )


def proposal_members(db, groups: set[str]) -> list[str]:
    """Names of the hub users in any of ``groups``, sorted: those a share may go to."""
    found = db.query(orm.Group).filter(orm.Group.name.in_(sorted(groups))).all()
    return sorted({u.name for g in found for u in g.users})


class OwnedSession:
    """Finding ``owner``'s server ``server`` for a handler, if the caller may manage it."""

    def _spawner(self, owner: str, server: str):
        if self.current_user is None:
            raise web.HTTPError(403, "Log in to share a session.")
        if not self.has_scope(f"servers!server={owner}/{server}"):
            raise web.HTTPError(403, "Only the session's owner can share it.")
        user = self.find_user(owner)
        if user is None or server not in user.orm_spawners:
            raise web.HTTPError(404, "No such session.")
        return user.spawners[server]


class ProposalShareHandler(OwnedSession, APIHandler):
    def _target(self, name) -> object:
        if not isinstance(name, str) or not name:
            raise web.HTTPError(400, 'Say whom to share with: {"user": "<name>"}.')
        target = self.find_user(name)
        if target is None:
            raise web.HTTPError(404, f"No such user: {name[:100]}")
        return target

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, ShareRefused):
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"status": status_code, "message": exc.message}))
            return
        super().write_error(status_code, **kwargs)

    def get(self, owner: str, server: str = ""):
        spawner = self._spawner(owner, server)
        shares = [
            {"user": s.user.name, "created_at": s.created_at.isoformat() + "Z"}
            for s in spawner.orm_spawner.shares
            if s.user is not None
        ]
        self.finish(json.dumps({"server": f"{owner}/{server}", "shares": shares}))

    async def post(self, owner: str, server: str = ""):
        spawner = self._spawner(owner, server)
        target = self._target((self.get_json_body() or {}).get("user"))
        if target.name == owner:
            raise web.HTTPError(400, "You already own this session.")
        check_member(*await session_proposal(spawner), target)
        scopes = [f"access:servers!server={owner}/{server}"]
        share = orm.Share.grant(self.db, spawner.orm_spawner, target.orm_user, scopes=scopes)
        self.log.info("%s shared %s/%s with %s", self.current_user.name, owner, server, target.name)
        self.finish(json.dumps({"user": target.name, "scopes": sorted(share.scopes)}))

    def delete(self, owner: str, server: str = ""):
        spawner = self._spawner(owner, server)
        target = self._target(self.get_argument("user", ""))
        orm.Share.revoke(self.db, spawner.orm_spawner, target.orm_user)
        self.log.info("%s revoked %s's access to %s/%s", self.current_user.name, target.name, owner, server)
        self.set_status(204)
        self.finish()


default_handlers = [(r"/api/daas/shares/([^/]+)/([^/]*)", ProposalShareHandler)]
