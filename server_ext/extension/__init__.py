"""The Jupyter Server extension serving the engines under ``/daas/api/``.

Importing this package loads neither ``jupyter_server`` nor the engines'
heavy dependencies: the app, the handlers and the job manager load when the
server enables the extension; Dask workers import only :mod:`.tasks`.
Kernels talk to the extension through :class:`server_ext.extension.client.DaasClient`.
"""


def _jupyter_server_extension_points():
    from .app import DaasExtension

    return [{"module": "server_ext.extension", "app": DaasExtension}]
