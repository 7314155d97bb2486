"""Where requests may read and write: the one path-below-root helper of the extension.

Inputs resolve (symlinks included) inside the server's root directory or the
session's dataset; outputs inside the root directory only, never in the
read-only dataset (nor the root's ``data/`` folder holding its link).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DaasRequestError


def is_below(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether *path* is *root* or lies below it, after resolving both (symlinks included)."""
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class PathPolicy:
    """Resolve request paths against ``root_dir`` and ``dataset_path``."""

    def __init__(self, root_dir: str, dataset_path: str | None = None, readonly_dir: str = "data"):
        self.root_dir = os.path.realpath(root_dir)
        self.dataset_path = os.path.realpath(dataset_path) if dataset_path else None
        # where the scientist sees the dataset (e.g. the link root/data/<slug>)
        self.dataset_link = os.path.normpath(os.path.join(self.root_dir, dataset_path)) if dataset_path else None
        self.readonly_dir = os.path.join(self.root_dir, readonly_dir) if readonly_dir else None

    def _absolute(self, field: str, value: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise DaasRequestError(400, f"{field}: give a path (relative to the server's root directory)")
        if "\0" in value:
            raise DaasRequestError(400, f"{field}: the path contains a NUL character")
        path = value if os.path.isabs(value) else os.path.join(self.root_dir, value)
        return os.path.normpath(path)

    def input(self, field: str, value: str, must_exist: bool = True) -> str:
        """The resolved path of an input, inside the root directory or the dataset."""
        path = os.path.realpath(self._absolute(field, value))
        allowed = [self.root_dir] + ([self.dataset_path] if self.dataset_path else [])
        if not any(is_below(path, root) for root in allowed):
            raise DaasRequestError(
                403, f"{field}: {value!r} is outside the server's root directory and the session's dataset")
        if must_exist and not os.path.exists(path):
            raise DaasRequestError(404, f"{field}: {value!r} does not exist")
        return path

    def output(self, field: str, value: str) -> str:
        """The resolved path of an output file, inside the root directory and outside the dataset."""
        path = self._absolute(field, value)
        parent = os.path.realpath(os.path.dirname(path))
        # resolve the file itself too: an existing symlink would redirect the write
        target = os.path.realpath(path) if os.path.lexists(path) else os.path.join(parent, os.path.basename(path))
        if not (is_below(parent, self.root_dir) and is_below(target, self.root_dir)) or target == self.root_dir:
            raise DaasRequestError(403, f"{field}: {value!r} is outside the server's root directory; "
                                        "write your results below it (e.g. in processed/)")
        for ro in (self.dataset_path, self.readonly_dir):
            if ro and (is_below(target, ro) or is_below(parent, ro)):
                raise DaasRequestError(403, f"{field}: {value!r} is inside the read-only dataset; "
                                            "write your results elsewhere (e.g. in processed/)")
        return target

    def relative(self, path: str) -> str:
        """*path* as the API shows it: relative to the root when below it (dataset paths through its link)."""
        real = os.path.realpath(path)
        if is_below(real, self.root_dir):
            return os.path.relpath(real, self.root_dir)
        if self.dataset_path and is_below(real, self.dataset_path):
            shown = os.path.normpath(os.path.join(self.dataset_link, os.path.relpath(real, self.dataset_path)))
            if shown.startswith(self.root_dir + os.sep):
                return os.path.relpath(shown, self.root_dir)
            return shown
        return real
