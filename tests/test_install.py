"""The built distribution, installed as a user installs it, run from a project of the user's own."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY

pytestmark = pytest.mark.slow  # builds and installs the wheel, then runs a study from it

USER_MODELS = '''
"""The user's own models package: infersearch must not import this one as its own."""
Task = "the user's Task, not infersearch's"
'''
USER_MODEL = '''
from infersearch.models.diagnosis_mlp import task as zoo_task


def task(epochs: int = 2):
    """The user's model: here the zoo's MLP, renamed, from the user's own package."""
    t = zoo_task(epochs=epochs)
    t.name = "mine"
    return t
'''
USER_SEARCH = 'raise ImportError("infersearch imported the user package named search")\n'


def _run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding the wheel built from this checkout (not editable); its dependencies come from
    this environment's site-packages through a .pth line, so nothing is downloaded."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "outputs", "*.egg-info"))
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp), "."], src)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp.glob("infersearch-*.whl")
    venv = tmp / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], tmp).returncode == 0
    python = venv / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp).stdout
    deps = [p for p in site.getsitepackages() if p.endswith("site-packages")] or [sysconfig.get_paths()["purelib"]]
    (Path(purelib.strip()) / "_infersearch_test_deps.pth").write_text("\n".join(deps) + "\n")
    done = _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], tmp)
    assert done.returncode == 0, done.stderr[-2000:]
    return venv


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """An unrelated project with its own ``models`` and ``search`` packages and its own config folder."""
    proj = tmp_path_factory.mktemp("project")
    (proj / "models").mkdir()
    (proj / "models" / "__init__.py").write_text(USER_MODELS)
    (proj / "models" / "mine.py").write_text(USER_MODEL)
    (proj / "search").mkdir()
    (proj / "search" / "__init__.py").write_text(USER_SEARCH)
    (proj / "conf" / "model").mkdir(parents=True)
    (proj / "conf" / "model" / "mine.yaml").write_text("_target_: models.mine.task\nepochs: 2\n")
    return proj


def test_the_installed_wheel_runs_a_study_from_a_project_with_its_own_models_package(installed, project):
    exe = str(installed / "bin" / "infersearch")
    commands = _run([exe, "--help"], project)
    assert commands.returncode == 0 and "serve-tune" in commands.stdout, commands.stderr[-2000:]
    help_ = _run([exe, "run", "--help"], project)
    assert help_.returncode == 0 and "infersearch is powered by Hydra" in help_.stdout, help_.stderr[-2000:]
    assert "digits_cnn" in help_.stdout  # the zoo's configs, read from inside the installed package
    report = _run([exe, "report", "--help"], project)
    assert report.returncode == 0 and report.stdout.startswith("usage: infersearch report"), report.stderr[-2000:]
    job = _run([exe, "--config-dir", "conf", "model=mine", "--cfg", "job"], project)
    assert job.returncode == 0 and "_target_: models.mine.task" in job.stdout, job.stderr[-2000:]
    tiny = [o for o in TINY if not o.startswith("model.")]
    study = _run(
        [exe, "-m", "--config-dir", "conf", "model=mine", "space=none", "engine=choice(eager)", "study.n_trials=1",
         "tracking=disabled", *tiny],
        project,
    )  # fmt: skip
    text = study.stdout + study.stderr
    assert study.returncode == 0, text[-3000:]
    assert "study 'mine': 1 trials, 1 complete" in text
    assert (project / "outputs" / "mine" / "recommendation.json").exists()
    where = _run([str(installed / "bin" / "python"), "-c", "import infersearch; print(infersearch.__file__)"], project)
    assert str(installed) in where.stdout  # the wheel's copy, not this checkout
