"""The facility spawners: the shared base (form, validation, manifest) and where servers run.

``base.FacilitySpawner`` -> ``local.FacilityLocalSpawner`` (processes on this
machine) and ``kube.FacilityKubeSpawner`` (Kubernetes pods). The Kubernetes
one is imported on first use only, so ``import hub_ext.spawners`` needs no
kubespawner and no cluster configuration.
"""

from .base import ENVIRONMENT_TRAITS, OPTION_KEYS, FacilitySpawner, SpawnRefused

__all__ = ["ENVIRONMENT_TRAITS", "OPTION_KEYS", "FacilitySpawner", "SpawnRefused",
           "FacilityLocalSpawner", "FacilityKubeSpawner"]


def __getattr__(name):
    # Each concrete spawner subclasses a JupyterHub/KubeSpawner class; import on first use.
    if name == "FacilityLocalSpawner":
        from .local import FacilityLocalSpawner

        return FacilityLocalSpawner
    if name == "FacilityKubeSpawner":
        from .kube import FacilityKubeSpawner

        return FacilityKubeSpawner
    raise AttributeError(name)
