"""Claim -> group rules: ordered, first match wins, unmatched dropped, roles filtered."""

import pytest

from hub_ext.auth.rules import GroupRuleError, PRESETS, entitlement_pattern, groups_from_claims, parse_rules
from hub_ext.demo.oidc import DEMO_GROUP_RULES, DEMO_IDENTITIES, entitlement

NS = "urn:mace:example.org"


def test_aarc_entitlements_with_roles_filtered_and_facility_prefix():
    rules = parse_rules([{
        "claims": ["entitlements", "eduperson_entitlement"],
        "match": entitlement_pattern(NS, "pan", r"proposal-(?P<proposal>\d+)"),
        "group": "p{proposal}", "roles": ["member", "owner"], "prefix": "xfel-",
    }])
    claims = {
        "entitlements": [
            f"{NS}:group:pan:proposal-2120:role=member#idp.example.org",
            f"{NS}:group:pan:proposal-2121:role=owner",
            f"{NS}:group:pan:proposal-3000:role=applicant#idp.example.org",  # role not allowed
            f"{NS}:group:pan:proposal-3001#idp.example.org",  # no role at all: not allowed either
            "urn:mace:evil.org:group:pan:proposal-4000:role=member",  # another namespace
            f"{NS}:group:pan:proposal-5000:role=member:extra",  # malformed tail
        ],
        "eduperson_entitlement": f"{NS}:group:pan:proposal-2122:role=member",  # the older claim, a string
    }
    assert groups_from_claims(claims, rules) == ["xfel-p2120", "xfel-p2121", "xfel-p2122"]


def test_first_matching_rule_decides_even_when_it_drops():
    rules = parse_rules([
        {"claims": "groups", "match": r"^secret-(?P<role>\w+)$", "group": "never", "roles": ["admin"]},
        {"claims": "groups", "match": r"^(?P<name>[a-z0-9-]+)$", "group": "{name}"},
    ])
    # "secret-user" matches rule 1, whose role filter drops it: rule 2 never sees it
    assert groups_from_claims({"groups": ["secret-user", "p2120", "Not Valid!"]}, rules) == ["p2120"]
    assert groups_from_claims({"groups": ["secret-admin"]}, rules) == ["never"]


def test_keycloak_access_groups_and_plain_groups_presets():
    kc = parse_rules(PRESETS["keycloak-accessgroups"])
    assert groups_from_claims({"accessGroups": ["/proposals/2120", "2121", "/staff", "p77"]}, kc) == [
        "p2120", "p2121", "p77"]
    plain = parse_rules(PRESETS["groups"])
    assert groups_from_claims({"groups": ["p2120", "../etc", "a b", 7, None]}, plain) == ["p2120"]
    assert groups_from_claims({}, plain) == [] and groups_from_claims({"groups": "p1"}, plain) == ["p1"]


def test_two_facilities_never_collide():
    rules = parse_rules([
        {"claims": "entitlements", "match": entitlement_pattern(NS, "xfel", r"(?P<p>\d+)"), "group": "xfel-p{p}"},
        {"claims": "entitlements", "match": entitlement_pattern(NS, "petra", r"(?P<p>\d+)"), "group": "petra-p{p}"},
    ])
    claims = {"entitlements": [f"{NS}:group:xfel:2120", f"{NS}:group:petra:2120"]}
    assert groups_from_claims(claims, rules) == ["petra-p2120", "xfel-p2120"]


@pytest.mark.parametrize("rule, message", [
    ({"match": "x"}, "claims"),
    ({"claims": "groups", "match": "("}, "regular expression"),
    ({"claims": "groups", "match": "(?P<a>x)", "group": "{b}"}, "not a group"),
    ({"claims": "groups", "match": "x", "roles": ["member"]}, "role"),
    ({"claims": "groups", "colour": "red"}, "unknown"),
    ("groups", "mapping"),
])
def test_bad_rules_say_what_is_wrong(rule, message):
    with pytest.raises(GroupRuleError, match=message):
        parse_rules([rule])


def test_demo_identities_map_to_the_demo_groups():
    rules = parse_rules(DEMO_GROUP_RULES)
    got = {name: groups_from_claims(claims, rules) for name, claims in DEMO_IDENTITIES.items()}
    assert got == {"alice": ["p2120", "p2121"], "bob": ["p900001", "petra-p11"], "admin": [], "carol": []}
    assert groups_from_claims({"entitlements": [entitlement("1", role="owner")]}, rules) == ["p1"]
