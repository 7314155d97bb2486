"""The extension's client as the widgets use it: found once, errors made readable."""

from __future__ import annotations

from pathlib import Path


def default_client():
    """The ``DaasClient`` of the server this kernel runs under."""
    from server_ext.extension.client import DaasClient

    return DaasClient.from_env()


def relative_to_root(path: str | Path, root_dir: str | None) -> str:
    """*path* as the API takes it: relative to the server's root when it lies inside, else as is."""
    p = Path(path)
    if root_dir and p.is_absolute():
        try:
            return str(p.resolve(strict=False).relative_to(Path(root_dir).resolve()))
        except ValueError:
            try:
                return str(p.relative_to(root_dir))
            except ValueError:
                pass
    return str(path)


def local_path(path: str, root_dir: str | None) -> Path:
    """A path the API answered (root-relative or absolute) as a path this kernel can open."""
    p = Path(path)
    return p if p.is_absolute() or not root_dir else Path(root_dir) / p
