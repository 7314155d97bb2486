"""The desktop session a scientist gets: the dataset, its viewers and a terminal.

``xstartup`` (next to this file) runs ``python -m server_ext.desktop.session``
inside the VNC server's X display. It prepares a menu (openbox) or desktop
icons (XFCE) with:

- a view of the mounted dataset (a file manager when one is installed, else a
  terminal in the dataset folder listing its files),
- ``silx view`` on the dataset's HDF5/NeXus files (Debian's ``python3-silx``,
  run by the system Python it belongs to),
- a terminal whose ``python`` is the notebooks' Python,

then runs the window manager until the scientist logs out. It always ends
with a non-zero status: jupyter-server-proxy then starts a fresh desktop on
the next connection instead of serving a dead one.

Nothing here is written into the scientist's own configuration: the menu,
window-manager settings and autostart entries live in a session folder that
is rebuilt at every start (only XFCE's desktop icons must be in ``~/Desktop``,
as ``daas-*.desktop`` files that are replaced each time).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

#: Suffixes opened with silx view.
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".cxi")
#: At most this many files get their own menu entry (a run has hundreds of sequences).
MAX_MENU_FILES = 40
#: Ended by logout or a crash, never "final": see the module docstring.
SESSION_ENDED = 3

SILX_COMMAND = ("/usr/bin/python3", "-m", "silx", "view")
FILE_MANAGERS = ("thunar", "pcmanfm", "nautilus")
TERMINALS = ("xfce4-terminal", "xterm")


@dataclass(frozen=True)
class Action:
    """One launcher: a menu entry (openbox) or a desktop icon (XFCE)."""

    name: str
    argv: tuple[str, ...]
    icon: str = "application-x-executable"


def dataset_dir() -> Path:
    """Where the dataset is mounted (``DAAS_DATASET_PATH``), else the home directory."""
    path = os.environ.get("DAAS_DATASET_PATH")
    if path and os.path.isdir(path):
        return Path(path)
    return Path.home()


def hdf5_files(root: Path, limit: int = MAX_MENU_FILES) -> list[Path]:
    """The first ``limit`` HDF5/NeXus files under ``root``, in a stable order.

    Walks at most a few thousand entries: a dataset may be a huge tree.
    """
    found, seen = [], 0
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            seen += 1
            if name.lower().endswith(HDF5_SUFFIXES):
                found.append(Path(folder) / name)
                if len(found) >= limit:
                    return found
        if seen > 5000:
            break
    return found


def silx_available() -> bool:
    return os.path.exists(SILX_COMMAND[0]) and os.path.isdir("/usr/lib/python3/dist-packages/silx")


def terminal_argv(title: str, cwd: Path, command: str = "") -> tuple[str, ...]:
    """A terminal in ``cwd`` running an interactive shell (after ``command``)."""
    shell = f"cd {shlex.quote(str(cwd))} && {command + '; ' if command else ''}exec bash -i"
    for name in TERMINALS:
        exe = shutil.which(name)
        if exe and name == "xterm":
            return (exe, "-T", title, "-geometry", "110x32", "-e", "sh", "-c", shell)
        if exe:
            return (exe, "--title", title, "-x", "sh", "-c", shell)
    raise SystemExit("no terminal emulator found (install xterm)")


def actions(root: Path) -> list[Action]:
    """The launchers of this session, in menu order."""
    files_label = f"Dataset files ({root.name})"
    manager = next((shutil.which(m) for m in FILE_MANAGERS if shutil.which(m)), None)
    if manager:
        browse = Action(files_label, (manager, str(root)), "folder")
    else:  # a terminal listing the dataset stands in for a file manager
        browse = Action(files_label, terminal_argv(files_label, root, "ls -l"), "folder")
    items = [browse, Action("Terminal (notebook Python)", terminal_argv("Terminal", Path.home()), "utilities-terminal")]
    if silx_available():
        files = hdf5_files(root)
        if files:
            items.append(Action("silx view: whole dataset", SILX_COMMAND + tuple(map(str, files)), "silx"))
        for f in files:
            items.append(Action(f"silx view: {f.relative_to(root)}", SILX_COMMAND + (str(f),), "silx"))
    return items


def session_dir() -> Path:
    """A private folder for this session's generated configuration."""
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or Path.home() / ".daas")
    path = base / "desktop-session"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)
    return path


def _command_line(argv) -> str:
    # openbox and .desktop files split commands like a shell (g_shell_parse_argv)
    return shlex.join(argv)


def openbox_menu(items: list[Action]) -> str:
    entries = []
    for a in items:
        entries.append(
            f'  <item label={quoteattr(a.name)}><action name="Execute">'
            f"<command>{escape(_command_line(a.argv))}</command></action></item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<openbox_menu xmlns="http://openbox.org/3.4/menu">\n'
        '<menu id="root-menu" label="Desktop">\n'
        + "\n".join(entries)
        + '\n  <separator />\n  <item label="Log out"><action name="Exit"><prompt>no</prompt></action></item>\n'
        "</menu>\n</openbox_menu>\n"
    )


def openbox_rc(menu_path: Path, system_rc: Path = Path("/etc/xdg/openbox/rc.xml")) -> str:
    """The system's openbox settings with our menu as the only menu."""
    rc = system_rc.read_text()
    # <file> appears only in the <menu> section: the first becomes ours, the others go
    files = re.findall(r"<file>.*?</file>", rc, flags=re.S)
    if not files:
        raise SystemExit(f"{system_rc} names no menu file to replace")
    rc = rc.replace(files[0], f"<file>{escape(str(menu_path))}</file>", 1)
    for other in files[1:]:
        rc = rc.replace(other, "", 1)
    return rc


def desktop_entry(a: Action) -> str:
    return (
        "[Desktop Entry]\nType=Application\nVersion=1.0\n"
        f"Name={a.name}\nIcon={a.icon}\nExec={_command_line(a.argv)}\nTerminal=false\n"
    )


def write_xfce_launchers(items: list[Action], config: Path) -> None:
    desktop = Path.home() / "Desktop"
    desktop.mkdir(exist_ok=True)
    for old in desktop.glob("daas-*.desktop"):
        old.unlink()
    for i, a in enumerate(items):
        path = desktop / f"daas-{i:02d}.desktop"
        path.write_text(desktop_entry(a))
        path.chmod(0o755)  # XFCE launches only executable launchers
    autostart = config / "autostart"
    autostart.mkdir(parents=True)
    (autostart / "daas-dataset.desktop").write_text(desktop_entry(items[0]))


def session_environment() -> dict[str, str]:
    """The session's environment: the notebooks' Python first on PATH."""
    env = dict(os.environ)
    python_bin = os.path.dirname(os.environ.get("DAAS_DESKTOP_PYTHON") or sys.executable)
    env["PATH"] = os.pathsep.join([python_bin, env.get("PATH", "/usr/bin:/bin")])
    return env


def choose_desktop() -> str:
    """``DAAS_DESKTOP``: ``openbox`` (light: CI, the demo; the default) or ``xfce`` (the image)."""
    wanted = os.environ.get("DAAS_DESKTOP") or "openbox"
    if wanted not in ("openbox", "xfce"):
        raise SystemExit(f"DAAS_DESKTOP={wanted!r}: expected openbox or xfce")
    if wanted == "xfce" and not shutil.which("xfce4-session"):
        raise SystemExit("DAAS_DESKTOP=xfce but xfce4-session is not installed")
    return wanted


def session_command(kind: str, items: list[Action], folder: Path, env: dict[str, str]) -> list[str]:
    """Write the session's configuration and return the command that runs it."""
    if kind == "xfce":
        write_xfce_launchers(items, folder / "xdg")
        env["XDG_CONFIG_DIRS"] = os.pathsep.join([str(folder / "xdg"), env.get("XDG_CONFIG_DIRS", "/etc/xdg")])
        command = ["xfce4-session"]
    else:
        menu = folder / "menu.xml"
        menu.write_text(openbox_menu(items))
        rc = folder / "rc.xml"
        rc.write_text(openbox_rc(menu))
        # --startup, not "app & exec openbox": the window would race the WM
        command = ["openbox", "--config-file", str(rc), "--startup", _command_line(items[0].argv)]
    dbus = shutil.which("dbus-launch")
    return [dbus, "--exit-with-session", *command] if dbus else command


def main() -> int:
    root = dataset_dir()
    items = actions(root)
    env = session_environment()
    os.chdir(Path.home())
    command = session_command(choose_desktop(), items, session_dir(), env)
    subprocess.run(command, env=env)
    return SESSION_ENDED


if __name__ == "__main__":
    sys.exit(main())
