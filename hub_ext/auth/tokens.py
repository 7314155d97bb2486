"""The logged-in user's access token, for catalogue backends that query on their behalf.

Kept apart from :mod:`.oidc` so that the spawners need not import
oauthenticator: any authenticator that keeps ``access_token`` in
``auth_state`` works; one that also offers ``token_expired(auth_state)`` (as
:class:`hub_ext.auth.oidc.FacilityOIDCAuthenticator` does) gets it refreshed
first when it has expired.
"""

from __future__ import annotations

from typing import Any


async def access_token_for(user: Any, authenticator: Any = None) -> str | None:
    """``user``'s live access token (refreshed first when expired), or None without one.

    ``user`` is JupyterHub's User, in the hub process.
    """
    if authenticator is None or not getattr(authenticator, "enable_auth_state", False):
        return None
    state = await user.get_auth_state()
    expired = getattr(authenticator, "token_expired", None)
    if state and expired is not None and expired(state):
        refreshed = await authenticator.refresh_user(user)
        if refreshed is False:
            return None  # the user must log in again; the hub asks them at their next page
        if isinstance(refreshed, dict) and refreshed.get("auth_state"):
            await user.save_auth_state(refreshed["auth_state"])
            state = refreshed["auth_state"]
    token = (state or {}).get("access_token")
    return token if isinstance(token, str) and token else None
