"""What a desktop environment needs on the machine that runs the servers.

Desktop environments (``desktop: true``) run TigerVNC and a window manager
inside the single-user server (server_ext/desktop). On Kubernetes the image
carries them; for servers on this machine (the local spawner, the demo)
these Debian packages must be installed. ``daas setup`` installs them when
root (they are part of its "runtime" packages).
"""

from __future__ import annotations

import os

#: Debian package -> a file that shows it is installed.
DESKTOP_PACKAGES = {
    "tigervnc-standalone-server": "/usr/bin/Xtigervnc",
    "tigervnc-tools": "/usr/bin/tigervncpasswd",
    "dbus-x11": "/usr/bin/dbus-launch",
    "openbox": "/usr/bin/openbox",
    "xterm": "/usr/bin/xterm",
    "python3-silx": "/usr/lib/python3/dist-packages/silx",
}


def missing_desktop_packages() -> list[str]:
    return [package for package, marker in DESKTOP_PACKAGES.items() if not os.path.exists(marker)]


def desktop_unavailable_reason() -> str | None:
    """Why a desktop cannot start on this machine, for the spawn form; None when it can."""
    missing = missing_desktop_packages()
    if not missing:
        return None
    return (
        "The desktop is not installed on this machine; administrators: run `daas setup` as root, "
        f"or `sudo apt-get install {' '.join(missing)}`."
    )
