"""Login through OpenID Connect, groups from token claims.

:class:`FacilityOIDCAuthenticator` is oauthenticator's ``GenericOAuthenticator``
(which does the OAuth 2 authorization-code flow, the token exchange and the
userinfo request) plus:

* the proposal groups of :mod:`hub_ext.auth.rules`, from the userinfo claims
  (``manage_groups``: JupyterHub's memberships are replaced at every login and
  every refresh, so a removed entitlement removes the group);
* a login refused when no rule grants any group (``require_group``);
* the access token kept in the encrypted ``auth_state`` with its expiry, and
  refreshed through the refresh token once it has expired, so a catalogue
  that queries on the user's behalf always gets a live one
  (:func:`hub_ext.auth.tokens.access_token_for`).
"""

from __future__ import annotations

import time
from oauthenticator.generic import GenericOAuthenticator
from traitlets import Bool, Dict, Float, List, Unicode, default, validate

from .rules import GroupRuleError, PRESETS, groups_from_claims, parse_rules


class FacilityOIDCAuthenticator(GenericOAuthenticator):
    """OpenID Connect login with claim -> group rules (``c.JupyterHub.authenticator_class = "facility-oidc"``).

    Configure the provider's endpoints as for ``GenericOAuthenticator``
    (``authorize_url``, ``token_url``, ``userdata_url``, ``client_id``,
    ``client_secret``, ``oauth_callback_url``), then :attr:`group_rules`.
    """

    group_rules = List(
        Dict(),
        help="""Ordered claim -> group rules; for each claim value the first rule that
        matches decides, values no rule matches are dropped.

        Each rule: ``claims`` (claim names to read, e.g. ``["entitlements",
        "eduperson_entitlement"]``), ``match`` (a regular expression; named
        groups become template fields), ``group`` (the group-name template,
        e.g. ``"xfel-p{subgroup}"``), optionally ``roles`` (allowed values of the
        expression's ``role`` group: other roles are dropped) and ``prefix``
        (prepended, so two facilities' proposal numbers never collide).
        A preset name (``"groups"``, ``"keycloak-accessgroups"``) stands for its rules.
        """,
    ).tag(config=True)

    presets = List(
        Unicode(),
        help="Names of ready-made rule sets (see hub_ext.auth.rules.PRESETS) tried after group_rules.",
    ).tag(config=True)

    require_group = Bool(
        True,
        help="""Refuse the login of a user to whom no rule grants any group.

        Data access follows groups: without one, a user could only see public
        data. Set False to let such users in (``allow_all`` or ``allowed_users``
        still apply as usual).""",
    ).tag(config=True)

    token_refresh_margin = Float(
        30.0,
        help="Seconds before its expiry at which the access token counts as expired and is refreshed.",
    ).tag(config=True)

    @default("basic_auth")
    def _basic_auth_default(self):
        # client_secret_basic: OpenID Connect's default token endpoint authentication,
        # the one every provider accepts for the refresh grant too
        return True

    @default("manage_groups")
    def _manage_groups_default(self):
        return True

    @default("enable_auth_state")
    def _enable_auth_state_default(self):
        return True

    @default("auth_state_groups_key")
    def _groups_key_default(self):
        return self.groups_for_auth_state

    @default("username_claim")
    def _username_claim_default(self):
        return "sub"

    @default("scope")
    def _scope_default(self):
        return ["openid", "profile", "email"]

    @default("login_service")
    def _login_service_default(self):
        return "your research identity"

    @validate("group_rules")
    def _check_rules(self, proposal):
        try:
            parse_rules(r for r in proposal["value"] if not isinstance(r, str))
        except GroupRuleError as e:
            raise ValueError(f"c.FacilityOIDCAuthenticator.{e}") from e
        return proposal["value"]

    @validate("presets")
    def _check_presets(self, proposal):
        unknown = [p for p in proposal["value"] if p not in PRESETS]
        if unknown:
            raise ValueError(f"unknown group rule preset(s) {unknown}; known: {sorted(PRESETS)}")
        return proposal["value"]

    @property
    def rules(self):
        rules = list(self.group_rules)
        for name in self.presets:
            rules.extend(PRESETS[name])
        return parse_rules(rules)

    def groups_for_auth_state(self, auth_state: dict) -> list[str]:
        """The groups the rules grant for the claims in ``auth_state`` (userinfo answer)."""
        claims = auth_state.get(self.user_auth_state_key) or {}
        groups = groups_from_claims(claims, self.rules)
        self.log.info("Groups from claims of %s: %s", claims.get(self.username_claim) if isinstance(self.username_claim, str) else "user", groups)
        return groups

    def build_auth_state_dict(self, token_info, user_info):
        state = super().build_auth_state_dict(token_info, user_info)
        expires_in = token_info.get("expires_in")
        if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool):
            state["expires_at"] = time.time() + float(expires_in)
        return state

    async def check_allowed(self, username, auth_model):
        if auth_model is None or auth_model.get("admin") or not self.require_group:
            return await super().check_allowed(username, auth_model)
        if not auth_model.get("groups"):
            self.log.warning("Login of %s refused: no claim grants any group", username)
            return False
        if not (self.allowed_users or self.allowed_groups or self.allowed_scopes):
            return True  # a granted proposal group is the admission ticket
        return await super().check_allowed(username, auth_model)

    def token_expired(self, auth_state: dict | None) -> bool:
        expires_at = (auth_state or {}).get("expires_at")
        return isinstance(expires_at, (int, float)) and time.time() >= expires_at - self.token_refresh_margin

    async def refresh_user(self, user, handler=None, **kwargs):
        """Refresh through the refresh token once the access token expired, else as GenericOAuthenticator.

        A provider may keep answering userinfo with an expired token for a
        while; a backend acting on the user's behalf would then be refused.
        """
        if not self.enable_auth_state:
            return True
        auth_state = await user.get_auth_state()
        if auth_state and self.token_expired(auth_state) and auth_state.get("refresh_token"):
            self.log.info("Access token of %s expired: refreshing", user.name)
            try:
                token_info = await self.get_token_info(
                    handler, self.build_refresh_token_request_params(auth_state["refresh_token"])
                )
            except Exception as e:
                self.log.info("Refresh of %s's token failed (%s): new login needed", user.name, e)
                return False
            token_info.setdefault("refresh_token", auth_state["refresh_token"])
            try:
                return await self._token_to_auth_model(token_info)
            except Exception as e:
                self.log.error("Fresh token of %s unusable (%s): new login needed", user.name, e)
                return False
        return await super().refresh_user(user, handler, **kwargs)
