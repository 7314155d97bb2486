"""``daas demo --oidc``: a local OpenID Connect provider and the demo's claim -> group rules.

The provider is ``oidc-provider-mock`` (discovery, authorization code flow,
refresh, JWKS, userinfo) on loopback; its login page asks only for a user
name (``sub``). The demo users carry the three kinds of claims a facility
meets: AARC entitlements (alice), a Keycloak ``accessGroups`` and a plain
``groups`` claim (bob); carol holds nothing the rules accept and is refused.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from ..auth.rules import entitlement_pattern

ENTITLEMENT_NS = "urn:mace:example.org"


def entitlement(proposal: str, role: str = "member") -> str:
    """An AARC-G069 entitlement for a demo proposal group."""
    return f"{ENTITLEMENT_NS}:group:pan:proposal-{proposal}:role={role}#idp.example.org"


#: Claims per demo user (the provider's userinfo answers these).
DEMO_IDENTITIES: dict[str, dict] = {
    "alice": {"name": "Alice", "entitlements": [entitlement("2120"), entitlement("2121"),
                                                entitlement("900001", role="applicant")]},
    "bob": {"name": "Bob", "groups": ["petra-p11", "unrelated-mailing-list!"],
            "accessGroups": ["/proposals/900001"]},
    "admin": {"name": "Hub admin"},
    "carol": {"name": "Carol", "groups": ["staff canteen"]},
}

#: Ordered rules: entitlements (members and owners only), Keycloak accessGroups, PETRA groups.
DEMO_GROUP_RULES: list[dict] = [
    {"claims": ["entitlements", "eduperson_entitlement"],
     "match": entitlement_pattern(ENTITLEMENT_NS, "pan", r"proposal-(?P<proposal>\d{1,12})"),
     "group": "p{proposal}", "roles": ["member", "owner"]},
    {"claims": ["accessGroups"], "match": r"^/proposals/(?P<proposal>\d{1,12})$", "group": "p{proposal}"},
    {"claims": ["groups"], "match": r"^(?P<name>petra-[a-z0-9.]{1,32})$", "group": "{name}"},
]


def start_provider(port: int = 0, identities: dict[str, dict] = DEMO_IDENTITIES,
                   token_lifetime_s: int = 3600) -> AbstractContextManager:
    """A context manager running the provider on 127.0.0.1:``port`` in a thread (``.server_port``)."""
    from datetime import timedelta

    from oidc_provider_mock import User, run_server_in_thread

    users = [User(sub=name, claims=dict(claims)) for name, claims in identities.items()]
    return run_server_in_thread(port=port, user_claims=users, access_token_max_age=timedelta(seconds=token_lifetime_s))
