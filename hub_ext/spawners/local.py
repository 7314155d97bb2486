"""FacilityLocalSpawner: the facility spawner as local processes (one machine, the demo)."""

import asyncio
import os
import shutil
import sys
from pathlib import Path

from escapism import escape
from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Bool, Unicode, default

from ..desktop import desktop_unavailable_reason
from ..files import write_json_atomic
from .base import ENVIRONMENT_TRAITS, FacilitySpawner, SpawnRefused

_SAFE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


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

    async def wait_for_death(self, timeout=10):
        """Whether the server exited within ``timeout`` s, checked every ``death_interval`` s.

        JupyterHub backs off exponentially here (random waits doubling up to
        5 s), made for servers that are costly to poll: a server that exits
        3 s after its signal was seen up to 3-4 s later, and the stop, the
        user's "Stop My Server" included, waited for that. A local process
        is a ``waitpid`` away.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.poll() is None:
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.sleep(min(self.death_interval, left))
        return True

    def environment_unavailable(self, env):
        # servers run on this machine: a desktop needs its Debian packages here
        return desktop_unavailable_reason() if env.desktop else None

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
        write_json_atomic(manifest_path, self.session_manifest(dataset, env, str(link)))
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
