"""Facility software environments a scientist can start a server in.

An environment is a container image on Kubernetes, or a command on one
machine, plus resources and the URL the server opens. Environments can be
restricted to the facilities whose data they understand.
"""

import logging
import re
from dataclasses import dataclass

from .files import ReloadingYamlFile, parse_records

log = logging.getLogger("JupyterHub")

#: Where jupyter-remote-desktop-proxy serves the desktop in a single-user server.
DESKTOP_URL = "/desktop/"

SLUG_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class EnvironmentConfigError(Exception):
    """The environments configuration is invalid. Says what to fix."""

    user_error = True

_BYTES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_bytes(value):
    """``"16G"`` -> 17179869184, as JupyterHub's ``mem_limit`` understands it."""
    if value is None or isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", str(value), re.IGNORECASE)
    if not m:
        raise ValueError(f"cannot read {value!r} as a size (examples: 512M, 16G)")
    return int(float(m.group(1)) * _BYTES[m.group(2).upper()])


@dataclass(frozen=True)
class Environment:
    slug: str
    display_name: str
    description: str = ""
    facilities: tuple = ()  # empty: offered for every facility
    image: str | None = None  # Kubernetes
    cmd: tuple | None = None  # local; None: jupyterhub-singleuser of the hub's Python
    default_url: str | None = None
    cpu_limit: float | None = None
    mem_limit: int | None = None  # bytes
    cpu_guarantee: float | None = None
    mem_guarantee: int | None = None
    # a Linux desktop (jupyter-remote-desktop-proxy) rather than JupyterLab:
    # opens /desktop/ unless default_url says otherwise
    desktop: bool = False

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise ValueError(f"an environment must be a mapping, not {d!r}")
        slug = d.get("slug")
        if not isinstance(slug, str) or not SLUG_PATTERN.match(slug):
            raise ValueError(
                f"environment slug {slug!r} must be lowercase letters, digits and '-' (max 63)"
            )
        cmd = d.get("cmd")
        if isinstance(cmd, str):
            cmd = tuple(cmd.split())
        elif cmd is not None:
            if not isinstance(cmd, list) or not all(isinstance(c, str) for c in cmd):
                raise ValueError(f"environment {slug}: cmd must be a string or list of strings")
            cmd = tuple(cmd)
        facilities = d.get("facilities") or ()
        if isinstance(facilities, str):
            facilities = (facilities,)
        default_url = d.get("default_url")
        if default_url is not None and not str(default_url).startswith("/"):
            raise ValueError(f"environment {slug}: default_url must start with '/'")
        desktop = d.get("desktop", False)
        if not isinstance(desktop, bool):
            raise ValueError(f"environment {slug}: desktop must be true or false")
        if desktop and default_url is None:
            default_url = DESKTOP_URL
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"environment {slug}: unknown keys {sorted(unknown)}")

        def number(key):
            v = d.get(key)
            if v is not None and not isinstance(v, (int, float)):
                raise ValueError(f"environment {slug}: {key} must be a number")
            return None if v is None else float(v)

        def size(key):
            try:
                return parse_bytes(d.get(key))
            except ValueError as e:
                raise ValueError(f"environment {slug}: {key}: {e}") from None

        return cls(
            slug=slug,
            display_name=str(d.get("display_name") or slug),
            description=str(d.get("description") or ""),
            facilities=tuple(str(f) for f in facilities),
            image=d.get("image"),
            cmd=cmd,
            default_url=default_url,
            cpu_limit=number("cpu_limit"),
            mem_limit=size("mem_limit"),
            cpu_guarantee=number("cpu_guarantee"),
            mem_guarantee=size("mem_guarantee"),
            desktop=desktop,
        )

    def offered_for(self, dataset):
        """True when this environment may be used with ``dataset``."""
        return not self.facilities or dataset.facility in self.facilities

    def to_dict(self):
        return {
            "slug": self.slug,
            "display_name": self.display_name,
            "description": self.description,
            "facilities": list(self.facilities),
            "image": self.image,
            "default_url": self.default_url,
            "cpu_limit": self.cpu_limit,
            "mem_limit": self.mem_limit,
            "desktop": self.desktop,
        }


def parse_environments(entries, source="environments"):
    """Check a list of mappings and return Environments, slugs unique."""
    if not isinstance(entries, list) or not entries:
        raise EnvironmentConfigError(f"{source}: expected a non-empty list of environments")
    return parse_records(entries, Environment.from_dict, "slug", EnvironmentConfigError, source, "environment")


class EnvironmentsFile(ReloadingYamlFile):
    """An ``environments:`` YAML file, re-read when it changes.

    A broken edit keeps the last good version in service (logged), as the
    catalogue does; only a file that never parsed is an error.
    """

    def __init__(self, path):
        super().__init__(path, "environments", parse_environments, EnvironmentConfigError, "environments file", log)
