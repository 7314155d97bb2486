"""Claim -> group mapping: which JupyterHub groups a login's token claims grant.

A rule reads one or more claims (``groups``, ``entitlements``,
``eduperson_entitlement``, ``accessGroups``...), matches each value against a
regular expression and, on a match, turns it into a group name with a
template that may use the expression's named groups. Rules are tried in
order for every value; the first rule that matches decides (it may still
drop the value when its role is not allowed); values no rule matches are
dropped. So a token can never grant a group the rules do not describe.

AARC-G069 (which supersedes G002) entitlements look like
``urn:mace:example.org:group:pan:proposal-2120:role=member#idp.example.org``:
``<namespace>:group:<GROUP>[:<SUBGROUP>...][:role=<ROLE>][#<AUTHORITY>]``.
:func:`entitlement_pattern` builds the expression for one namespace and group
path, capturing the subgroup, the role and the authority.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from string import Formatter
from typing import Any


class GroupRuleError(ValueError):
    """A mapping rule in the configuration is invalid; the message says which and why."""

    user_error = True


def entitlement_pattern(namespace: str, group_path: str, subgroup: str = r"[^:#]+") -> str:
    """A regular expression for AARC-G069 entitlements of ``namespace:group:group_path:<subgroup>``.

    Named groups: ``subgroup``, ``role`` (None without ``:role=``), ``authority``.
    """
    return (
        "^" + re.escape(namespace) + ":group:" + re.escape(group_path)
        + ":(?P<subgroup>" + subgroup + ")"
        + r"(?::role=(?P<role>[^#:]+))?(?:#(?P<authority>.+))?$"
    )


@dataclass(frozen=True)
class GroupRule:
    """One mapping rule: ``claims``, ``match`` (a regex), ``group`` (a template), ``roles``, ``prefix``."""

    claims: tuple[str, ...]
    match: re.Pattern
    group: str = "{0}"
    roles: tuple[str, ...] = ()
    prefix: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "group rule") -> GroupRule:
        if not isinstance(d, Mapping):
            raise GroupRuleError(f"{where}: a rule must be a mapping, not {d!r}")
        unknown = set(d) - {"claims", "claim", "match", "group", "roles", "prefix"}
        if unknown:
            raise GroupRuleError(f"{where}: unknown key(s) {sorted(unknown)}")
        claims = d.get("claims", d.get("claim"))
        if isinstance(claims, str):
            claims = [claims]
        if not claims or not all(isinstance(c, str) and c for c in claims):
            raise GroupRuleError(f"{where}: 'claims' must name one or more claims")
        try:
            pattern = re.compile(d.get("match", r"^(.+)$"))
        except (re.error, TypeError) as e:
            raise GroupRuleError(f"{where}: 'match' is not a valid regular expression: {e}") from e
        template = d.get("group", "{0}")
        if not isinstance(template, str) or not template:
            raise GroupRuleError(f"{where}: 'group' must be a non-empty template")
        names = {f for _, f, _, _ in Formatter().parse(template) if f is not None}
        for name in names:
            if not (name.isdigit() and int(name) <= pattern.groups or name in pattern.groupindex):
                raise GroupRuleError(f"{where}: template field {{{name}}} is not a group of 'match'")
        roles = d.get("roles") or ()
        if isinstance(roles, str):
            roles = [roles]
        if roles and "role" not in pattern.groupindex:
            raise GroupRuleError(f"{where}: 'roles' needs a (?P<role>...) group in 'match'")
        prefix = d.get("prefix", "")
        if not isinstance(prefix, str):
            raise GroupRuleError(f"{where}: 'prefix' must be a string")
        return cls(tuple(claims), pattern, template, tuple(roles), prefix)

    def apply(self, value: str) -> tuple[bool, str | None]:
        """``(matched, group)``: whether this rule decides ``value`` and the group it grants (None: dropped)."""
        m = self.match.search(value)
        if m is None:
            return False, None
        if self.roles and m.groupdict().get("role") not in self.roles:
            return True, None
        fields = {k: v or "" for k, v in m.groupdict().items()}
        positional = [m.group(0)] + [g or "" for g in m.groups()]
        try:
            name = self.prefix + self.group.format(*positional, **fields)
        except (IndexError, KeyError):
            return True, None
        return True, name or None


def parse_rules(rules: Iterable[Mapping[str, Any]]) -> list[GroupRule]:
    """Rules from configuration (a list of mappings); GroupRuleError names the bad one."""
    return [GroupRule.from_dict(r, f"group rule #{i + 1}") for i, r in enumerate(rules)]


def _values(claim: Any) -> list[str]:
    if isinstance(claim, str):
        return [claim]
    if isinstance(claim, (list, tuple)):
        return [v for v in claim if isinstance(v, str)]
    return []


def groups_from_claims(claims: Mapping[str, Any], rules: Iterable[GroupRule]) -> list[str]:
    """The sorted, unique group names ``rules`` grant for the token ``claims``."""
    rules = list(rules)
    claim_names = sorted({c for r in rules for c in r.claims})
    groups = set()
    for claim in claim_names:
        for value in _values(claims.get(claim)):
            for rule in rules:
                if claim not in rule.claims:
                    continue
                matched, group = rule.apply(value)
                if matched:
                    if group:
                        groups.add(group)
                    break
    return sorted(groups)


#: Ready-made rules for common identity providers (see README: OpenID Connect).
PRESETS: dict[str, list[dict]] = {
    # A plain ``groups`` claim that already holds proposal groups (``p2120``).
    "groups": [{"claims": ["groups"], "match": r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,63})$", "group": "{name}"}],
    # A facility Keycloak (as SciCat sets it up): ``accessGroups`` like ``/proposals/2120`` or ``2120``.
    "keycloak-accessgroups": [
        {"claims": ["accessGroups"], "match": r"^/?(?:proposals/)?p?(?P<proposal>\d{1,12})$", "group": "p{proposal}"}
    ],
}
