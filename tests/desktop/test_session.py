"""The session script's launchers and window-manager configuration, without an X server."""

import os
import xml.etree.ElementTree as ET

import pytest

from server_ext.desktop import session

from .servertools import make_dataset

NS = {"ob": "http://openbox.org/3.4/menu"}


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "run 7 & <co>")  # names that need quoting and escaping
    (root / "raw").mkdir()
    (root / "raw" / "RAW-R0007-AGIPD00-S00000.h5").write_bytes(b"")
    (root / "notes.txt").write_text("not HDF5")
    monkeypatch.setenv("DAAS_DATASET_PATH", str(root))
    return root


@pytest.mark.skipif(not session.silx_available(), reason="python3-silx (Debian) absent; `daas setup` installs it")
def test_menu_offers_silx_view_on_each_hdf5_file_and_a_terminal(dataset):
    menu = ET.fromstring(session.openbox_menu(session.actions(session.dataset_dir())))
    labels = [i.get("label") for i in menu.iterfind(".//ob:item", NS)]
    assert labels[0] == f"Dataset files ({dataset.name})"
    assert "Terminal (notebook Python)" in labels
    assert "silx view: raw/RAW-R0007-AGIPD00-S00000.h5" in labels and "silx view: scan.nxs" in labels
    assert not any("notes.txt" in label for label in labels)
    assert labels[-1] == "Log out"
    commands = {i.get("label"): i.find(".//ob:command", NS).text for i in menu.iterfind(".//ob:item", NS) if i.find(".//ob:command", NS) is not None}
    # the command survives shell-like splitting with the odd folder name intact
    import shlex

    assert shlex.split(commands["silx view: scan.nxs"]) == ["/usr/bin/python3", "-m", "silx", "view", str(dataset / "scan.nxs")]


def test_dataset_listing_is_bounded(tmp_path):
    for i in range(session.MAX_MENU_FILES + 5):
        (tmp_path / f"f{i:03d}.h5").write_bytes(b"")
    files = session.hdf5_files(tmp_path)
    assert len(files) == session.MAX_MENU_FILES and files == sorted(files)


@pytest.mark.skipif(not os.path.exists("/etc/xdg/openbox/rc.xml"), reason="openbox (Debian) absent; `daas setup` installs it")
def test_openbox_rc_uses_only_the_session_menu(tmp_path):
    rc = session.openbox_rc(tmp_path / "menu.xml")
    menu_files = [f.text for f in ET.fromstring(rc).iterfind(".//{http://openbox.org/3.4/rc}menu/{http://openbox.org/3.4/rc}file")]
    assert menu_files == [str(tmp_path / "menu.xml")]


def test_terminal_has_the_notebooks_python_first_on_path(monkeypatch):
    monkeypatch.setenv("DAAS_DESKTOP_PYTHON", "/opt/conda/envs/mx/bin/python")
    assert session.session_environment()["PATH"].split(":")[0] == "/opt/conda/envs/mx/bin"


def test_unknown_desktop_choice_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("DAAS_DESKTOP", "kde")
    with pytest.raises(SystemExit, match="expected openbox or xfce"):
        session.choose_desktop()
