"""Desktop environments in the configuration, the form and validation (no hub, no X server)."""

import asyncio

import pytest

from hub_ext import desktop
from hub_ext.environments import DESKTOP_URL, Environment
from hub_ext.spawners import SpawnRefused

from .test_local_spawner import configured, record

DESKTOP_ENV = {"slug": "desktop", "display_name": "Linux desktop", "desktop": True}


def test_desktop_environment_opens_the_desktop_unless_told_otherwise():
    assert Environment.from_dict(DESKTOP_ENV).default_url == DESKTOP_URL == "/desktop/"
    assert Environment.from_dict({**DESKTOP_ENV, "default_url": "/lab"}).default_url == "/lab"
    assert Environment.from_dict({"slug": "lab"}).desktop is False
    with pytest.raises(ValueError, match="desktop must be true or false"):
        Environment.from_dict({**DESKTOP_ENV, "desktop": "yes"})


@pytest.fixture
def no_desktop_here(monkeypatch, tmp_path):
    """This machine without the desktop's Debian packages (markers that do not exist)."""
    monkeypatch.setattr(desktop, "DESKTOP_PACKAGES", {"tigervnc-standalone-server": str(tmp_path / "no-Xtigervnc"),
                                                       "openbox": str(tmp_path / "no-openbox")})


def _spawner(tmp_path):
    sp = configured(tmp_path, [record(tmp_path, "xfel:p1:r1", public=True)],
                    environments=[{"slug": "lab", "display_name": "Lab"}, DESKTOP_ENV])
    return sp


def test_form_says_the_desktop_is_not_installed_and_start_is_refused(tmp_path, no_desktop_here):
    sp = _spawner(tmp_path)
    html = asyncio.run(sp.render_options_form())
    assert "The desktop is not installed on this machine" in html
    assert "sudo apt-get install tigervnc-standalone-server openbox" in html
    assert 'data-unavailable="1"' in html
    with pytest.raises(SpawnRefused, match="Linux desktop: The desktop is not installed") as e:
        asyncio.run(sp.resolve_options({"dataset": "xfel:p1:r1", "environment": "desktop"}))
    assert e.value.status_code == 503
    # notebook environments are unaffected
    assert asyncio.run(sp.resolve_options({"dataset": "xfel:p1:r1", "environment": "lab"}))[1].slug == "lab"


@pytest.mark.skipif(bool(desktop.missing_desktop_packages()), reason="desktop Debian packages absent")
def test_form_offers_the_desktop_where_it_is_installed(tmp_path):
    sp = _spawner(tmp_path)
    assert "data-unavailable" not in asyncio.run(sp.render_options_form())
    assert asyncio.run(sp.resolve_options({"dataset": "xfel:p1:r1", "environment": "desktop"}))[1].desktop


def test_setup_installs_the_desktops_packages():
    from hub_ext.demo.setup_tools import DEBIAN_PACKAGES

    assert desktop.DESKTOP_PACKAGES.items() <= DEBIAN_PACKAGES["runtime"].items()
