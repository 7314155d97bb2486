"""A contents manager that keeps the mounted dataset read-only in JupyterLab.

The local spawner links the dataset into ``data/<slug>``; on one machine a
link cannot be mounted read-only, so the file browser and the contents API
refuse every write, rename or delete under ``data/`` instead. (On Kubernetes
the volume mount itself is read-only.)
"""

import posixpath

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from tornado import web
from traitlets import Unicode


class ReadOnlyDataContentsManager(AsyncLargeFileManager):
    readonly_dir = Unicode(
        "data", help="Directory (relative to the root) whose contents may not be changed."
    ).tag(config=True)

    def _guard(self, *paths):
        prefix = posixpath.normpath(self.readonly_dir.strip("/"))
        for path in paths:
            # normalised, so notebooks/../data/x and ./data/x are caught too
            path = posixpath.normpath("/" + (path or "").strip("/")).lstrip("/")
            if path == prefix or path.startswith(prefix + "/"):
                raise web.HTTPError(
                    403, f"{prefix}/ holds the read-only dataset; save your work outside it (e.g. in notebooks/)."
                )

    async def save(self, model, path=""):
        self._guard(path)
        return await super().save(model, path)

    async def delete_file(self, path):
        self._guard(path)
        return await super().delete_file(path)

    async def rename_file(self, old_path, new_path):
        self._guard(old_path, new_path)
        return await super().rename_file(old_path, new_path)

    async def new_untitled(self, path="", type="", ext=""):
        self._guard(path + "/x")
        return await super().new_untitled(path=path, type=type, ext=ext)

    async def copy(self, from_path, to_path=None):
        self._guard((to_path or from_path.rsplit("/", 1)[0]) + "/x")
        return await super().copy(from_path, to_path)

    async def create_checkpoint(self, path):
        self._guard(path)
        return await super().create_checkpoint(path)
