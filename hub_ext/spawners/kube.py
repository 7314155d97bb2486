"""FacilityKubeSpawner: the facility spawner on Kubernetes, via KubeSpawner.

Imported only when ``hub_ext.spawners.FacilityKubeSpawner`` is first used
(or this module is), so ``import hub_ext`` never imports kubespawner or reads a
Kubernetes config.
"""

import json
import posixpath

from kubernetes_asyncio.client import (
    V1DownwardAPIVolumeFile,
    V1DownwardAPIVolumeSource,
    V1ObjectFieldSelector,
    V1Volume,
    V1VolumeMount,
)
from kubespawner import KubeSpawner
from kubespawner.utils import get_k8s_model
from traitlets import Dict, TraitError, Unicode, validate

from ..files import relative_below
from .base import ENVIRONMENT_TRAITS, FacilitySpawner, SpawnRefused

#: Pod annotation carrying the session manifest (JSON); the downward API
#: projects it into the container as a file.
SESSION_ANNOTATION = "daas.panosc.eu/session"

# Spawner traits an environment may set; restored to their configured values
# before each start so one environment's settings never leak into the next.
_ENVIRONMENT_TRAITS = ENVIRONMENT_TRAITS + ("image",)

# Top-level keys of a Kubernetes Volume that are not its source.
_VOLUME_NON_SOURCE_KEYS = {"name"}


def _absolute_posix(proposal, trait):
    value = proposal["value"]
    if not value.startswith("/"):
        raise TraitError(f"c.FacilityKubeSpawner.{trait} must be an absolute path, not {value!r}")
    return posixpath.normpath(value)


class FacilityKubeSpawner(FacilitySpawner, KubeSpawner):
    """Servers as Kubernetes pods with the chosen dataset mounted read-only.

    Each start, after the dataset and environment are validated
    (:meth:`FacilitySpawner.resolve_options`), the pod gets:

    * the environment's ``image``, resources (``cpu_limit``, ``mem_limit``,
      guarantees) and ``default_url`` (passed as ``JUPYTERHUB_DEFAULT_URL``);
      an environment without an ``image`` is refused;
    * a volume built from :attr:`dataset_volume` (any volume source: NFS, PVC,
      hostPath, CSI, ...) mounted **read-only** at
      ``<dataset_mount_root>/<dataset slug>`` with ``subPath`` = the dataset
      path relative to :attr:`dataset_root`. The relative path is normalised
      and a dataset outside ``dataset_root`` is refused, so no catalogue entry
      can expose another part of the volume (the kubelet additionally refuses
      subPaths whose symlinks leave the volume);
    * the session manifest, delivered as a file at ``DAAS_SESSION``
      (``<home_dir>/<session_manifest_name>``, by default
      ``/home/jovyan/.daas/session.json``). The JSON is stored in the pod
      annotation ``daas.panosc.eu/session`` and projected into the container
      by a read-only ``downwardAPI`` volume mounted on the manifest's
      directory. The kubelet writes that file before the container starts, so
      unlike a ``postStart`` hook there is no race with the server reading it,
      it needs no shell in the image, and unlike an environment variable it is
      not subject to Kubernetes' ``$(VAR)`` expansion. Anyone who can read the
      pod can read the manifest; it holds catalogue metadata, no secrets;
    * ``DAAS_DATASET_PID``, ``DAAS_DATASET_PATH``, ``DAAS_ENVIRONMENT`` and
      ``DAAS_SESSION``.

    Dataset volume, mount and session manifest are added to the pod manifest
    in :meth:`get_pod_manifest` from the current session only; the configured
    ``volumes``/``volume_mounts`` are never modified, so restarting the same
    spawner with another dataset does not accumulate mounts. These additions
    are not template-expanded (dataset paths are used literally).

    Example::

        c.JupyterHub.spawner_class = "facility-kube"
        c.FacilityKubeSpawner.dataset_volume = {
            "nfs": {"server": "nfs.example.org", "path": "/exports/data", "readOnly": True}
        }
        c.FacilityKubeSpawner.dataset_root = "/data"  # catalogue paths start here
    """

    environment_traits = _ENVIRONMENT_TRAITS

    dataset_volume = Dict(
        help="""The Kubernetes volume source that holds the datasets.

        Any volume source, written as in a pod spec without ``name`` (set
        :attr:`dataset_volume_name` instead), for example::

            {"nfs": {"server": "nfs.example.org", "path": "/exports/data", "readOnly": True}}
            {"persistentVolumeClaim": {"claimName": "facility-data", "readOnly": True}}
            {"hostPath": {"path": "/gpfs/exfel/exp", "type": "Directory"}}
            {"csi": {"driver": "...", "readOnly": True, "volumeAttributes": {...}}}

        The root of this volume corresponds to :attr:`dataset_root` in the
        catalogue's paths. Each server mounts only its dataset's subdirectory,
        read-only. Empty (the default): servers cannot start, with a message
        asking to contact support.
        """,
    ).tag(config=True)

    @validate("dataset_volume")
    def _validate_dataset_volume(self, proposal):
        volume = proposal["value"]
        if not volume:
            return volume
        if "name" in volume:
            raise TraitError(
                "c.FacilityKubeSpawner.dataset_volume: leave out 'name' (set dataset_volume_name)"
            )
        sources = [k for k in volume if k not in _VOLUME_NON_SOURCE_KEYS]
        if len(sources) != 1 or not isinstance(volume[sources[0]], dict):
            raise TraitError(
                "c.FacilityKubeSpawner.dataset_volume must hold exactly one volume source, "
                f"e.g. {{'nfs': {{'server': ..., 'path': ...}}}}; got keys {sorted(volume)}"
            )
        return volume

    dataset_root = Unicode(
        "/data",
        help="""The directory that the root of :attr:`dataset_volume` corresponds to.

        Catalogue paths are absolute; a dataset at ``/data/exfel/p002120/r0029``
        with ``dataset_root = "/data"`` is mounted with
        ``subPath: exfel/p002120/r0029``. Datasets whose path is not below this
        directory are refused.
        """,
    ).tag(config=True)

    @validate("dataset_root")
    def _validate_dataset_root(self, proposal):
        return _absolute_posix(proposal, "dataset_root")

    dataset_mount_root = Unicode(
        "/data",
        help="""Directory in the server's container under which the dataset is mounted.

        The dataset appears read-only at ``<dataset_mount_root>/<dataset slug>``
        (the slug is the pid with unsafe characters replaced by ``-``), which is
        also ``DAAS_DATASET_PATH``.
        """,
    ).tag(config=True)

    @validate("dataset_mount_root")
    def _validate_dataset_mount_root(self, proposal):
        return _absolute_posix(proposal, "dataset_mount_root")

    dataset_volume_name = Unicode(
        "daas-dataset",
        help="Name of the dataset volume in the pod; must differ from the names in ``volumes``.",
    ).tag(config=True)

    session_volume_name = Unicode(
        "daas-session",
        help="Name of the downward-API volume holding the session manifest; must differ from ``volumes``.",
    ).tag(config=True)

    home_dir = Unicode(
        "/home/jovyan",
        help="""The single-user server's home directory in the image.

        The session manifest is placed at ``<home_dir>/<session_manifest_name>``
        (``c.FacilitySpawner.session_manifest_name``). The Jupyter Docker Stacks
        images use ``/home/jovyan``.
        """,
    ).tag(config=True)

    @validate("home_dir")
    def _validate_home_dir(self, proposal):
        return _absolute_posix(proposal, "home_dir")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._session = None

    # -- where things go -------------------------------------------------------------

    def dataset_sub_path(self, dataset):
        """The dataset's path relative to :attr:`dataset_root` ("" for the root itself).

        Raises :class:`SpawnRefused` when the path is not below ``dataset_root``.
        """
        path = posixpath.normpath(dataset.path)
        if not posixpath.isabs(path):
            raise SpawnRefused(403, f"Dataset {dataset.pid!r} has no absolute path in the catalogue; contact support.")
        relative = relative_below(path, self.dataset_root)
        if relative is None:
            self.log.error("Dataset %s path %s is outside dataset_root %s", dataset.pid, path, self.dataset_root)
            raise SpawnRefused(
                403,
                f"Dataset {dataset.pid!r} is stored outside the facility's data volume; contact support.",
            )
        return relative

    def dataset_mount_path(self, dataset):
        """Where the dataset appears in the container: ``<dataset_mount_root>/<slug>``."""
        return posixpath.join(self.dataset_mount_root, dataset.slug)

    def session_manifest_path(self):
        """Absolute path of the session manifest in the container (``DAAS_SESSION``)."""
        path = posixpath.normpath(posixpath.join(self.home_dir, self.session_manifest_name))
        # The manifest's directory is mounted over, so it must be a
        # subdirectory of home, never home itself.
        if not posixpath.dirname(path).startswith(self.home_dir.rstrip("/") + "/"):
            raise SpawnRefused(
                503,
                "c.FacilitySpawner.session_manifest_name must name a file in a subdirectory "
                f"of the home directory (like .daas/session.json), not {self.session_manifest_name!r}.",
            )
        return path

    # -- starting --------------------------------------------------------------------

    def _check_configuration(self, mount_path, manifest_dir):
        if not self.dataset_volume:
            raise SpawnRefused(
                503,
                "The facility data volume is not configured (c.FacilityKubeSpawner.dataset_volume); "
                "contact support.",
            )
        ours = {self.dataset_volume_name, self.session_volume_name}
        if len(ours) < 2:
            raise SpawnRefused(503, "dataset_volume_name and session_volume_name must differ; contact support.")
        for volume in self._sorted_dict_values(self.volumes) or []:
            name = volume.get("name") if isinstance(volume, dict) else getattr(volume, "name", None)
            if name in ours:
                raise SpawnRefused(
                    503, f"Volume name {name!r} is used twice (volumes and the dataset mount); contact support."
                )
        for mount in self._sorted_dict_values(self.volume_mounts) or []:
            path = mount.get("mountPath") if isinstance(mount, dict) else getattr(mount, "mount_path", None)
            if path and posixpath.normpath(path) in (mount_path, manifest_dir):
                raise SpawnRefused(
                    503, f"Mount path {path!r} is used twice (volume_mounts and the session); contact support."
                )

    async def prepare_session(self, dataset, env):
        """Choose image and mounts for ``dataset`` in ``env``; return the DAAS_* variables."""
        self._session = None
        if not env.image:
            raise SpawnRefused(
                400,
                f"Environment {env.display_name!r} has no container image, so it cannot start on "
                "Kubernetes; choose another environment (administrators: set its 'image').",
            )
        sub_path = self.dataset_sub_path(dataset)
        mount_path = self.dataset_mount_path(dataset)
        manifest_path = self.session_manifest_path()
        self._check_configuration(mount_path, posixpath.dirname(manifest_path))
        manifest = self.session_manifest(dataset, env, mount_path)
        self._session = {
            "sub_path": sub_path,
            "mount_path": mount_path,
            "manifest_path": manifest_path,
            "manifest_json": json.dumps(manifest, indent=2, sort_keys=True),
        }
        return self.session_env(dataset, env, mount_path, manifest_path)

    async def get_pod_manifest(self):
        """KubeSpawner's pod plus the current session's dataset mount and manifest."""
        pod = await super().get_pod_manifest()
        session = self._session
        if session is None:
            return pod
        spec = pod.spec
        container = spec.containers[0]
        spec.volumes = list(spec.volumes or [])
        container.volume_mounts = list(container.volume_mounts or [])

        spec.volumes.append(
            get_k8s_model(V1Volume, {"name": self.dataset_volume_name, **self.dataset_volume})
        )
        container.volume_mounts.append(
            V1VolumeMount(
                name=self.dataset_volume_name,
                mount_path=session["mount_path"],
                sub_path=session["sub_path"] or None,
                read_only=True,
            )
        )

        manifest_dir, manifest_file = posixpath.split(session["manifest_path"])
        pod.metadata.annotations = dict(pod.metadata.annotations or {})
        pod.metadata.annotations[SESSION_ANNOTATION] = session["manifest_json"]
        spec.volumes.append(
            V1Volume(
                name=self.session_volume_name,
                downward_api=V1DownwardAPIVolumeSource(
                    items=[
                        V1DownwardAPIVolumeFile(
                            path=manifest_file,
                            field_ref=V1ObjectFieldSelector(
                                field_path=f"metadata.annotations['{SESSION_ANNOTATION}']"
                            ),
                        )
                    ]
                ),
            )
        )
        container.volume_mounts.append(
            V1VolumeMount(name=self.session_volume_name, mount_path=manifest_dir, read_only=True)
        )
        return pod
