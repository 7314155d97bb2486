"""The facility spawner's shared part: pick a dataset and an environment, get a server with the data.

:class:`FacilitySpawner` holds everything that does not depend on where the
server runs: the catalogue, the environments, the options form, validation
and the session manifest. :mod:`.local` runs servers as local processes (one
machine, the demo); :mod:`.kube` runs them as Kubernetes pods via KubeSpawner.

Choices are validated when the form is parsed *and* when the server starts,
so a forged form, a REST API call or saved options that went stale are all
refused with a clear message before anything is started.
"""

import sys
from datetime import datetime, timezone
from pathlib import Path

from jinja2 import Environment as JinjaEnvironment
from jinja2 import FileSystemLoader, select_autoescape
from tornado import web
from traitlets import Bool, Dict, Integer, List, Type, Unicode, Union, default
from traitlets.config import Configurable

from ..catalogs import Catalog, CatalogError, catalog_class_from_name, valid_pid
from ..catalogs.base import user_access_token
from ..catalogs.federated import BackendUnavailable
from ..environments import EnvironmentConfigError, EnvironmentsFile, parse_environments
from ..files import is_below

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_jinja = JinjaEnvironment(
    loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"])
)

#: The keys a spawn request may carry; anything else is refused as forged.
OPTION_KEYS = ("dataset", "environment")

#: Spawner traits an environment may set (same names on Environment).
ENVIRONMENT_TRAITS = ("default_url", "cpu_limit", "mem_limit", "cpu_guarantee", "mem_guarantee")

# Catalogues are expensive (a 100,000-dataset index) and shared by every
# user's spawner: one instance per backend class and hub configuration. The
# entry keeps the config object alive, so its id is never reused.
_CATALOGS = {}
_ENV_FILES = {}

# Why a server was stopped by the hub (access withdrawn), by (user, server
# name): shown once on the user's next spawn form.
_STOP_REASONS: dict[tuple[str, str], str] = {}


def shared_catalog(catalog_class, config, log) -> Catalog:
    """The catalogue instance for ``catalog_class`` and this hub configuration (built once)."""
    cls = catalog_class_from_name(catalog_class)
    key = (cls, id(config))
    if key not in _CATALOGS:
        _CATALOGS[key] = (config, cls(config=config, log=log))
    return _CATALOGS[key][1]


class SpawnRefused(web.HTTPError):
    """A spawn request that must not start anything; the message is for the user."""

    def __init__(self, status, message):
        super().__init__(status, log_message=message.replace("%", "%%"))
        self.jupyterhub_message = message
        self.message = message

    def __str__(self):
        return self.message


def _default_examples_dir():
    # notebooks/ sits next to the packages in a source checkout (pip install -e);
    # a regular install puts them under <prefix>/share/panosc-daas/notebooks.
    checkout = Path(__file__).resolve().parents[2] / "notebooks"
    return str(checkout if checkout.is_dir() else Path(sys.prefix) / "share" / "panosc-daas" / "notebooks")


class FacilitySpawner(Configurable):
    """Dataset and environment selection shared by the local and Kubernetes spawners.

    Configure it under ``c.FacilitySpawner``; both concrete spawners read it.
    """

    catalog_class = Union(
        [Unicode(), Type(klass=Catalog)],
        default_value="yaml",
        help="""The dataset catalogue backend.

        A name from the ``daas.catalogs`` entry-point group: ``"yaml"``
        (:class:`hub_ext.catalogs.yaml_catalog.YamlCatalog`, configured with
        ``c.YamlCatalog.path``), ``"scicat"``
        (:class:`hub_ext.catalogs.scicat.SciCatCatalog`, configured with
        ``c.SciCatCatalog.url`` and ``token``), a plug-in's; or an import string
        ``"package.module.ClassName"`` of a :class:`hub_ext.catalogs.Catalog` subclass.
        """,
    ).tag(config=True)

    environments_file = Unicode(
        "",
        help="""YAML file with an ``environments:`` list (re-read when it changes).

        Each entry: ``slug``, ``display_name``, ``description``, ``facilities``
        (empty: every facility), ``image`` (Kubernetes), ``cmd`` (local),
        ``default_url``, ``cpu_limit``, ``mem_limit``, ``cpu_guarantee``,
        ``mem_guarantee``. Takes precedence over ``environments``.
        """,
    ).tag(config=True)

    environments = List(
        Dict(),
        help="The environments as a list of dicts (same keys as environments_file).",
    ).tag(config=True)

    admin_sees_all_datasets = Bool(
        False,
        help="""Let JupyterHub admins see and use every dataset.

        Off by default: admin rights manage the hub; they do not grant access to
        data, which follows the catalogue's access groups.
        """,
    ).tag(config=True)

    allowed_data_roots = List(
        Unicode(),
        help="""Directories dataset paths must lie under (after normalisation).

        A catalogue entry pointing elsewhere (``/etc``, a home directory) is
        refused at start. Empty: any absolute path.
        """,
    ).tag(config=True)

    examples_dir = Unicode(
        help="Directory of example notebooks copied into each server's notebooks/ folder."
    ).tag(config=True)

    @default("examples_dir")
    def _examples_dir_default(self):
        return _default_examples_dir()

    search_page_size = Integer(
        20, help="Datasets per page in the options form's picker."
    ).tag(config=True)

    search_url = Unicode(
        "",
        help="""Path of the dataset search API the picker calls.

        Default: the hub-managed service that :func:`hub_ext.api.configure`
        registers, ``<base_url>services/daas-datasets/datasets``. The picker
        authenticates with a short-lived token of the user that carries only
        the ``custom:daas:datasets`` scope (:attr:`picker_token_lifetime`).
        """,
    ).tag(config=True)

    picker_token_lifetime = Integer(
        3600,
        help="""Seconds the picker's search token lives (scope ``custom:daas:datasets``
        for the user only). A form left open longer asks the user to reload.""",
    ).tag(config=True)

    session_manifest_name = Unicode(
        ".daas/session.json",
        help="Path of the session manifest, relative to the server's home directory.",
    ).tag(config=True)

    auth_cache_max_age = Integer(
        30,
        help="""Seconds a single-user server trusts the hub's answer about who may use it.

        Passed to the server as ``HubOAuth.cache_max_age`` (JupyterHub's default
        is 300). A revoked share (:mod:`hub_ext.sharing`) stops working for new
        requests within this time; connections already open (a desktop being
        watched) stay open until they close.
        """,
    ).tag(config=True)

    def get_args(self):
        return [*super().get_args(), f"--HubOAuth.cache_max_age={int(self.auth_cache_max_age)}"]

    #: Spawner traits that the chosen Environment's fields of the same name override.
    environment_traits = ENVIRONMENT_TRAITS

    # -- catalogue and environments ------------------------------------------------

    @property
    def catalog(self):
        return shared_catalog(self.catalog_class, self.config, self.log)

    def environment_list(self):
        """The configured environments, re-read from the file when it changed."""
        if self.environments_file:
            env_file = _ENV_FILES.setdefault(
                self.environments_file, EnvironmentsFile(self.environments_file)
            )
            return env_file.load()
        return parse_environments(self.environments, "c.FacilitySpawner.environments")

    def user_groups(self):
        return sorted(g.name for g in self.user.groups)

    def sees_all_datasets(self):
        return bool(self.admin_sees_all_datasets and self.user.admin)

    async def _as_user(self):
        """Make the user's access token (if the login left one) visible to the catalogue."""
        from ..auth.tokens import access_token_for

        try:
            user_access_token.set(await access_token_for(self.user, getattr(self, "authenticator", None)))
        except Exception:  # no auth_state, no crypt key: the hub's own credentials apply
            self.log.debug("No access token for %s", self._log_name, exc_info=True)

    async def search_datasets(self, query="", facility="", offset=0, limit=None):
        """One page of the datasets this spawner's user may see."""
        await self._as_user()
        return await self.catalog.search(
            self.user_groups(),
            query=query,
            facility=facility,
            offset=offset,
            limit=limit or self.search_page_size,
            see_all=self.sees_all_datasets(),
        )

    async def check_dataset(self, pid):
        """The Dataset ``pid`` if this user may use it now (None if not); CatalogError if the catalogue cannot say."""
        await self._as_user()
        return await self.catalog.get(pid, self.user_groups(), see_all=self.sees_all_datasets())

    # -- validation ------------------------------------------------------------------

    def _data_path_allowed(self, path):
        return not self.allowed_data_roots or is_below(path, self.allowed_data_roots)

    async def resolve_options(self, options):
        """Check ``{"dataset": pid, "environment": slug}`` for this user.

        Returns ``(Dataset, Environment)`` or raises :class:`SpawnRefused`.
        Everything a user could forge is checked here, whatever the entry point.
        """
        if not isinstance(options, dict):
            raise SpawnRefused(400, "Spawn options must be a JSON object with 'dataset' and 'environment'.")
        unknown = sorted(k for k in options if k not in OPTION_KEYS)
        if unknown:
            raise SpawnRefused(400, f"Unknown spawn option(s): {', '.join(map(str, unknown))[:200]}.")
        pid, slug = options.get("dataset"), options.get("environment")
        if not pid:
            raise SpawnRefused(400, "Choose a dataset before starting a server.")
        if not isinstance(pid, str) or not valid_pid(pid):
            raise SpawnRefused(400, "The dataset identifier is malformed; choose a dataset from the list.")
        try:
            dataset = await self.check_dataset(pid)
        except BackendUnavailable as e:
            self.log.error("Catalogue of %s unavailable while checking %s for %s: %s", e.facility, pid, self._log_name, e)
            raise SpawnRefused(503, f"{e} Nothing was started.") from e
        except CatalogError as e:
            self.log.error("Catalogue unavailable while checking %s for %s: %s", pid, self._log_name, e)
            raise SpawnRefused(503, "The dataset catalogue is unavailable right now; try again in a few minutes.") from e
        if dataset is None:
            raise SpawnRefused(
                403,
                f"Dataset {pid!r} does not exist or you do not have access to it. "
                "Choose another dataset, or ask the proposal's PI to add you to its group.",
            )
        if not self._data_path_allowed(dataset.path):
            self.log.error("Dataset %s path %s is outside allowed_data_roots", pid, dataset.path)
            raise SpawnRefused(403, f"Dataset {pid!r} is stored outside the facility's data areas; contact support.")
        if not slug:
            raise SpawnRefused(400, f"Choose a software environment for dataset {pid!r}.")
        try:
            environments = self.environment_list()
        except EnvironmentConfigError as e:
            self.log.error("Environments misconfigured: %s", e)
            raise SpawnRefused(503, "The software environments are misconfigured; contact support.") from e
        env = next((e for e in environments if isinstance(slug, str) and e.slug == slug), None)
        if env is None:
            raise SpawnRefused(400, f"Unknown software environment {str(slug)[:64]!r}; choose one from the list.")
        if not env.offered_for(dataset):
            raise SpawnRefused(
                400,
                f"Environment {env.display_name!r} does not support {dataset.facility} data; "
                "choose one of the environments offered for this dataset.",
            )
        unavailable = self.environment_unavailable(env)
        if unavailable:
            raise SpawnRefused(503, f"{env.display_name}: {unavailable}")
        return dataset, env

    def environment_unavailable(self, env):
        """Why ``env`` cannot start where this spawner runs servers, or None.

        The form shows the reason beside the environment and the start is
        refused, instead of a server that comes up broken.
        """
        return None

    # -- the form ------------------------------------------------------------------

    @default("options_form")
    def _options_form_default(self):
        return FacilitySpawner.render_options_form

    def _requested_options(self):
        """Options named in the spawn URL (``?dataset=...``), else the last ones used."""
        wanted = {}
        handler = getattr(self, "handler", None)
        if handler is not None:
            for key in OPTION_KEYS:
                value = handler.get_argument(key, None) or handler.get_argument(f"opt-{key}", None)
                if value:
                    wanted[key] = value
        if not wanted and isinstance(self.user_options, dict):
            wanted = {k: self.user_options.get(k) for k in OPTION_KEYS if self.user_options.get(k)}
        return wanted

    def _search_path(self):
        if self.search_url:
            return self.search_url
        from ..api import SERVICE_NAME

        base = self.hub.base_url if getattr(self, "hub", None) else "/hub/"
        prefix = base[: -len("hub/")] if base.endswith("hub/") else "/"
        return f"{prefix}services/{SERVICE_NAME}/datasets"

    def _picker_token(self):
        """A token of this user limited to searching their own datasets; reused while it lives."""
        from ..api import SCOPE

        cached = getattr(self, "_picker_token_cache", None)
        now = datetime.now(timezone.utc).timestamp()
        if cached and cached[1] - now > self.picker_token_lifetime / 4:
            return cached[0]
        try:
            token = self.user.new_api_token(
                note="dataset picker", expires_in=self.picker_token_lifetime,
                scopes=[f"{SCOPE}!user={self.user.name}", f"read:users:groups!user={self.user.name}"],
            )
        except Exception as e:  # the API is not configured (no custom scope): the form says so
            self.log.error("Cannot issue the dataset picker's token (is hub_ext.api.configure used?): %s", e)
            return ""
        self._picker_token_cache = (token, now + self.picker_token_lifetime)
        return token

    async def render_options_form(self):
        wanted = self._requested_options()
        notice = error = ""
        stopped = _STOP_REASONS.pop((self.user.name, self.name), "")
        page, selected, facilities = None, None, []
        try:
            page = await self.search_datasets()
            facilities = await self.catalog.facilities()
            if wanted.get("dataset"):
                try:
                    selected = await self.check_dataset(str(wanted["dataset"]))
                except BackendUnavailable as e:
                    notice = str(e)
                else:
                    if selected is None:
                        notice = f"Dataset {str(wanted['dataset'])[:100]!r} is not available to you any more; choose another."
        except CatalogError as e:
            self.log.error("Catalogue unavailable for the spawn form: %s", e)
            error = "The dataset catalogue is unavailable right now. Try again in a few minutes; if it persists, contact support."
        try:
            environments = [
                dict(e.to_dict(), unavailable=self.environment_unavailable(e) or "")
                for e in self.environment_list()
            ]
        except EnvironmentConfigError as e:
            self.log.error("Environments misconfigured: %s", e)
            environments = []
            error = error or "The software environments are misconfigured; contact support."
        if stopped:
            notice = (stopped + " " + notice).strip()
        template = _jinja.get_template("options_form.html")
        return template.render(
            page=page.picker_dict() if page else {"total": 0, "items": [], "offset": 0, "limit": 0, "unavailable": []},
            selected=selected.picker_dict() if selected else None,
            wanted_environment=wanted.get("environment") or "",
            environments=environments,
            facilities=facilities,
            notice=notice,
            error=error,
            search_url=self._search_path(),
            search_token=self._picker_token(),
            user=self.user.name,
            server_name=self.name,
            page_size=self.search_page_size,
        )

    async def options_from_form(self, formdata):
        options = {}
        for key, values in formdata.items():
            if key.startswith("_"):  # _xsrf and friends belong to the hub
                continue
            if isinstance(values, list):
                if len(values) != 1:
                    raise SpawnRefused(400, f"Form field {key[:40]!r} must have exactly one value.")
                values = values[0]
            options[key] = values
        await self.resolve_options(options)
        return options

    async def options_from_query(self, query_data):
        # ?dataset=<pid> alone preselects in the form: refusing here makes
        # JupyterHub fall back to the form, which reads the query itself.
        return await self.options_from_form(query_data)

    # -- starting ----------------------------------------------------------------------

    def session_manifest(self, dataset, env, mount_path):
        return {
            "version": 1,
            "dataset": dataset.to_dict(),
            "dataset_path": mount_path,
            "environment": env.to_dict(),
            "user": self.user.name,
            "server_name": self.name,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }

    def session_env(self, dataset, env, mount_path, manifest_path):
        return {
            "DAAS_DATASET_PID": dataset.pid,
            "DAAS_DATASET_PATH": mount_path,
            "DAAS_ENVIRONMENT": env.slug,
            "DAAS_SESSION": manifest_path,
        }

    def apply_environment(self, env):
        """Set resources and URL from the chosen environment (traits of Spawner).

        Each start begins from the configured values, so an environment that
        sets no ``cpu_limit`` does not inherit the previous session's.
        """
        if not hasattr(self, "_configured_traits"):
            self._configured_traits = {name: getattr(self, name) for name in self.environment_traits}
        for name, value in self._configured_traits.items():
            setattr(self, name, value)
        for name in self.environment_traits:
            value = getattr(env, name)
            if value is not None:
                setattr(self, name, list(value) if isinstance(value, tuple) else value)

    @default("apply_user_options")
    def _apply_user_options_default(self):
        # start() validates and applies the options itself; this only tells
        # JupyterHub they are handled.
        return lambda spawner, options: None

    async def prepare_session(self, dataset, env):
        """Make the dataset available and return the environment variables to set."""
        raise NotImplementedError

    async def start(self):
        self._revoked = ""
        dataset, env = await self.resolve_options(self.user_options or {})
        self.log.info("Starting %s with dataset %s in environment %s", self._log_name, dataset.pid, env.slug)
        self.apply_environment(env)
        self._session_env = await self.prepare_session(dataset, env)
        return await super().start()

    @default("poll_interval")
    def _poll_interval_default(self):
        # each poll also re-checks the dataset's access: revocation reaches a
        # running server within this delay
        return 10

    async def access_withdrawn(self):
        """Why this running server may no longer have its dataset ("" while it may).

        Asked at every poll: the user's groups (re-synced at each login and
        token refresh) must still grant the dataset. A catalogue that cannot
        answer decides nothing (the server keeps running; logged).
        """
        pid = (self.user_options or {}).get("dataset")
        if not pid:
            return ""
        try:
            dataset = await self.check_dataset(str(pid))
        except CatalogError as e:
            self.log.warning("Cannot re-check access of %s to %s: %s", self._log_name, pid, e)
            return ""
        if dataset is not None:
            return ""
        server = f"Your server {self.name!r}" if self.name else "Your server"
        return (
            f"{server} was stopped: you no longer have access to dataset {pid!r} "
            "(your groups from your last login do not include it)."
        )

    async def poll(self):
        status = await super().poll()
        if status is not None:
            return status
        if getattr(self, "_revoked", ""):
            return 1
        reason = await self.access_withdrawn()
        if not reason:
            return None
        self._revoked = reason
        _STOP_REASONS[(self.user.name, self.name)] = reason
        self.log.warning("Stopping %s: access to its dataset was withdrawn. %s", self._log_name, reason)
        return 1  # the hub treats the server as stopped and stops it (user_stopped)

    def get_env(self):
        env = super().get_env()
        env.update(getattr(self, "_session_env", None) or {})
        return env
