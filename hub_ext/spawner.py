"""The facility spawner: pick a dataset and an environment, get a server with the data.

:class:`FacilitySpawner` holds everything that does not depend on where the
server runs: the catalogue, the environments, the options form, validation
and the session manifest. :class:`FacilityLocalSpawner` runs servers as local
processes (one machine, the demo); :class:`FacilityKubeSpawner` runs them as
Kubernetes pods via KubeSpawner, which is imported only when that class is
used, so ``import hub_ext.spawner`` needs no Kubernetes configuration.

Choices are validated when the form is parsed *and* when the server starts,
so a forged form, a REST API call or saved options that went stale are all
refused with a clear message before anything is started.
"""

import json
import os
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from escapism import escape
from jinja2 import Environment as JinjaEnvironment
from jinja2 import FileSystemLoader, select_autoescape
from jupyterhub.spawner import LocalProcessSpawner
from tornado import web
from traitlets import Bool, Dict, Integer, List, Type, Unicode, Union, default
from traitlets.config import Configurable

from .catalog import Catalog, CatalogError, catalog_class_from_name, valid_pid
from .environments import EnvironmentConfigError, EnvironmentsFile, parse_environments

TEMPLATES = Path(__file__).parent / "templates"
_SAFE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
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
    checkout = Path(__file__).resolve().parent.parent / "notebooks"
    return str(checkout if checkout.is_dir() else Path(sys.prefix) / "share" / "panosc-daas" / "notebooks")


class FacilitySpawner(Configurable):
    """Dataset and environment selection shared by the local and Kubernetes spawners.

    Configure it under ``c.FacilitySpawner``; both concrete spawners read it.
    """

    catalog_class = Union(
        [Unicode(), Type(klass=Catalog)],
        default_value="yaml",
        help="""The dataset catalogue backend.

        ``"yaml"`` (:class:`hub_ext.catalog.YamlCatalog`, configured with
        ``c.YamlCatalog.path``), ``"scicat"`` (:class:`hub_ext.scicat.SciCatCatalog`,
        configured with ``c.SciCatCatalog.url`` and ``token``) or an import string
        ``"package.module.ClassName"`` of a :class:`hub_ext.catalog.Catalog` subclass.
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
        "api/daas/datasets",
        help="""URL (relative to the hub's base URL, e.g. /hub/) of the dataset search API.

        Register the handler in jupyterhub_config.py with
        ``c.JupyterHub.extra_handlers = hub_ext.handlers.default_handlers``.
        """,
    ).tag(config=True)

    session_manifest_name = Unicode(
        ".daas/session.json",
        help="Path of the session manifest, relative to the server's home directory.",
    ).tag(config=True)

    #: Spawner traits that the chosen Environment's fields of the same name override.
    environment_traits = ENVIRONMENT_TRAITS

    # -- catalogue and environments ------------------------------------------------

    @property
    def catalog(self):
        cls = catalog_class_from_name(self.catalog_class)
        key = (cls, id(self.config))
        if key not in _CATALOGS:
            _CATALOGS[key] = (self.config, cls(config=self.config, log=self.log))
        return _CATALOGS[key][1]

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

    async def search_datasets(self, query="", facility="", offset=0, limit=None):
        """One page of the datasets this spawner's user may see."""
        return await self.catalog.search(
            self.user_groups(),
            query=query,
            facility=facility,
            offset=offset,
            limit=limit or self.search_page_size,
            see_all=self.sees_all_datasets(),
        )

    # -- validation ------------------------------------------------------------------

    def _data_path_allowed(self, path):
        if not self.allowed_data_roots:
            return True
        path = os.path.normpath(path)
        roots = [os.path.normpath(root) for root in self.allowed_data_roots]
        return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)

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
            dataset = await self.catalog.get(pid, self.user_groups(), see_all=self.sees_all_datasets())
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
        return dataset, env

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

    async def render_options_form(self):
        wanted = self._requested_options()
        notice = error = ""
        page, selected, facilities = None, None, []
        try:
            page = await self.search_datasets()
            facilities = await self.catalog.facilities()
            if wanted.get("dataset"):
                selected = await self.catalog.get(
                    str(wanted["dataset"]), self.user_groups(), see_all=self.sees_all_datasets()
                )
                if selected is None:
                    notice = f"Dataset {str(wanted['dataset'])[:100]!r} is not available to you any more; choose another."
        except CatalogError as e:
            self.log.error("Catalogue unavailable for the spawn form: %s", e)
            error = "The dataset catalogue is unavailable right now. Try again in a few minutes; if it persists, contact support."
        try:
            environments = [e.to_dict() for e in self.environment_list()]
        except EnvironmentConfigError as e:
            self.log.error("Environments misconfigured: %s", e)
            environments = []
            error = error or "The software environments are misconfigured; contact support."
        template = _jinja.get_template("options_form.html")
        return template.render(
            page=page.to_dict() if page else {"total": 0, "items": [], "offset": 0, "limit": 0},
            selected=selected.to_dict() if selected else None,
            wanted_environment=wanted.get("environment") or "",
            environments=environments,
            facilities=facilities,
            notice=notice,
            error=error,
            search_url=self.search_url,
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
        dataset, env = await self.resolve_options(self.user_options or {})
        self.log.info("Starting %s with dataset %s in environment %s", self._log_name, dataset.pid, env.slug)
        self.apply_environment(env)
        self._session_env = await self.prepare_session(dataset, env)
        return await super().start()

    def get_env(self):
        env = super().get_env()
        env.update(getattr(self, "_session_env", None) or {})
        return env


def _write_json_atomic(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


class FacilityLocalSpawner(FacilitySpawner, LocalProcessSpawner):
    """Servers as local processes of the hub's own user, one directory per server.

    Like ``SimpleLocalProcessSpawner`` it needs no system accounts; it is for
    one machine and trusted users: the demo, a beamline workstation. It is
    **not** a security boundary: every server runs as the hub's OS user and
    can read whatever that user can (other datasets, other homes, the hub's
    database). Facilities serving many users use :class:`FacilityKubeSpawner`.

    Each server's notebook directory gets ``data/<dataset-slug>`` (a link to
    the dataset) and the example notebooks; the file browser refuses writes
    under ``data/`` (see ``readonly_data``), and dataset files should also be
    read-only on disk.
    """

    environment_traits = ENVIRONMENT_TRAITS + ("cmd",)

    users_root = Unicode(
        "daas-users",
        help="Directory holding one home directory per user (relative: to the hub's working directory).",
    ).tag(config=True)

    readonly_data = Bool(
        True,
        help="""Run the server with a contents manager that refuses writes under data/.

        The environment's Python (its ``cmd``) must then have panosc-daas installed.
        """,
    ).tag(config=True)

    allow_root = Bool(
        False,
        help="""Start servers when the hub runs as root.

        They would run as root too (this spawner does not switch users): only
        for a demo or CI on a machine of its own.
        """,
    ).tag(config=True)

    @default("cmd")
    def _cmd_default(self):
        return [sys.executable, "-m", "jupyterhub.singleuser"]

    @property
    def home_dir(self):
        # escapism is injective (a@b and a-b stay apart); named servers get their own
        # directory, as their data/ links and manifests differ.
        name = escape(self.user.name, safe=_SAFE_CHARS, escape_char="-")
        if self.name:
            name += "--" + escape(self.name, safe=_SAFE_CHARS, escape_char="-")
        return str(Path(self.users_root).resolve() / name)

    def make_preexec_fn(self, name):
        home = self.home_dir

        def preexec():
            os.chdir(home)

        return preexec

    def user_env(self, env):
        env["USER"] = self.user.name
        env["HOME"] = self.home_dir
        env["SHELL"] = "/bin/bash"
        return env

    def move_certs(self, paths):
        return paths

    def get_args(self):
        args = super().get_args()
        if os.geteuid() == 0:  # the hub's own user runs the servers; in CI that is root
            args.append("--allow-root")
        if self.readonly_data:
            args.append("--ServerApp.contents_manager_class=server_ext.extension.contents.ReadOnlyDataContentsManager")
        return args

    async def prepare_session(self, dataset, env):
        if os.geteuid() == 0 and not self.allow_root:
            raise SpawnRefused(
                503, "This hub runs as root and would start your server as root; "
                "administrators: set c.FacilityLocalSpawner.allow_root = True (demo only) or use FacilityKubeSpawner.",
            )
        if not os.path.isdir(dataset.path):
            raise SpawnRefused(
                503, f"Dataset {dataset.pid!r} is not reachable on this machine ({dataset.path}); contact support."
            )
        home = Path(self.home_dir)
        data = home / "data"
        data.mkdir(parents=True, exist_ok=True)
        for entry in data.iterdir():
            if entry.is_symlink():  # links from earlier sessions; never touch real files
                entry.unlink()
        link = data / dataset.slug
        if link.exists():  # not a link (those were removed above): the scientist's own folder
            raise SpawnRefused(
                409, f"Your folder data/{dataset.slug} is in the way of the dataset; rename or move it, then start again."
            )
        link.symlink_to(dataset.path, target_is_directory=True)
        self._copy_examples(home / "notebooks")
        manifest_path = home / self.session_manifest_name
        _write_json_atomic(manifest_path, self.session_manifest(dataset, env, str(link)))
        self.notebook_dir = str(home)
        return self.session_env(dataset, env, str(link), str(manifest_path))

    def _copy_examples(self, target):
        source = Path(self.examples_dir)
        if not source.is_dir():
            return
        target.mkdir(parents=True, exist_ok=True)
        for nb in sorted(source.glob("*.ipynb")):
            if not (target / nb.name).exists():  # the scientist's edits win
                shutil.copy2(nb, target / nb.name)


def __getattr__(name):
    # FacilityKubeSpawner subclasses KubeSpawner; build it on first use only.
    if name == "FacilityKubeSpawner":
        from .kube import FacilityKubeSpawner

        return FacilityKubeSpawner
    raise AttributeError(name)
