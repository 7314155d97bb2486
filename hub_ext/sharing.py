"""Share a running session (notebooks and desktop) with the dataset's proposal team.

JupyterHub's own sharing (``orm.Share``, the ``shares`` scopes, its REST API
``/hub/api/shares``) does the granting, the checking of every request to the
shared server and the revoking. What it cannot know is who may receive a
share: here, only members of the session dataset's proposal group (one of its
``access_groups``). So users are *not* given JupyterHub's ``shares`` scope
(the default ``user`` role has none); they share through the hub-managed
service ``daas-share`` (:mod:`hub_ext.sharing_service`), which checks
membership and then grants through the hub's API:

``GET    <prefix>services/daas-share/api/shares/{owner}/{server}``              who has access
``POST   <prefix>services/daas-share/api/shares/{owner}/{server}  {"user": u}``  grant ``u`` access
``DELETE <prefix>services/daas-share/api/shares/{owner}/{server}?user=u``       revoke (204)
``GET    <prefix>services/daas-share/{owner}/{server}``                         the Share page

``{server}`` is empty for the default server (``.../shares/alice/``). The
caller needs the custom scope ``custom:daas:share`` for the owner: every user
holds it for themselves (``!user``), so only the owner shares her sessions
(grant it to a service through a role to let it share for others).

Register it in ``jupyterhub_config.py`` with::

    from hub_ext.sharing import configure
    configure(c, config_file=__file__, port=8091)
    c.JupyterHub.template_paths = [str(hub_ext.sharing.TEMPLATES)]  # the home page's "Share" button
"""

from __future__ import annotations

from typing import Any, Iterable

from tornado import web

from .api import add_service
from .spawners.base import TEMPLATES

__all__ = ["SCOPE", "SERVICE_NAME", "TEMPLATES", "ShareRefused", "check_member", "configure", "proposal_groups"]

SERVICE_NAME = "daas-share"
SCOPE = "custom:daas:share"


def configure(c: Any, config_file: str, port: int, ip: str = "127.0.0.1", bind_ip: str = "") -> None:
    """Add the sharing service (API and page), its scope and roles to the hub configuration ``c``.

    Arguments as for :func:`hub_ext.api.configure`. The service grants shares
    through the hub's API, so its role holds ``shares`` and ``access:servers``
    (a share can only carry what its grantor has) on every server: it is
    part of the hub, and it grants only after its own membership check.
    """
    add_service(
        c, name=SERVICE_NAME, module="hub_ext.sharing_service", config_file=config_file, port=port, ip=ip,
        bind_ip=bind_ip, scope=SCOPE,
        scope_description="Share one's running sessions with the members of their dataset's proposal.",
        service_scopes=["read:users", "read:servers", "read:groups", "shares", "access:servers",
                        "admin:auth_state"],
        service_role_description="The sharing service checks proposal membership, then grants through the hub",
        # the page logs users in through the hub; its cookie carries only the right to share their own sessions
        user_scopes=(f"access:services!service={SERVICE_NAME}",),  # logging in to the page
        oauth_client_allowed_scopes=[f"{SCOPE}!user"],
        oauth_no_confirm=True,
    )


class ShareRefused(web.HTTPError):
    """A share that must not be granted; the message says why, for the user."""

    user_error = True

    def __init__(self, status: int, message: str):
        super().__init__(status, log_message=message.replace("%", "%%"))
        self.message = message


def proposal_groups(dataset) -> set[str]:
    """The groups whose members may join a session on ``dataset``."""
    return set(dataset.access_groups or ())


def check_member(dataset, groups: set[str], target: str, target_groups: Iterable[str]) -> None:
    """Refuse user ``target`` (member of ``target_groups``) unless one of ``groups`` holds it."""
    if not groups & set(target_groups):
        raise ShareRefused(
            403,
            f"{target} is not a member of the proposal of dataset {dataset.pid!r}; "
            "only members of its group can join this session.",
        )
