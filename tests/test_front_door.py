"""``infersearch <command>``: the installed console script, run from a folder outside the checkout, and the
one compose path every command shares with the study."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from infersearch.cli import COMMANDS
from infersearch.compose import compose
from infersearch.core.errors import ConfigError
from tests.conftest import ROOT, run_cli

EXE = str(Path(sys.executable).parent / "infersearch")  # the console script pip installed


def door(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_help_lists_every_command_on_one_line(tmp_path):
    proc = door("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ["run", "report", "serve", "serve-tune", "alerts"]:
        (line,) = [x for x in proc.stdout.splitlines() if x.split()[:1] == [name]]
        assert len(line.split()) > 3, line  # the command and what it does


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_has_its_help_outside_the_checkout(tmp_path, name):
    proc = door(name, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"usage: infersearch {name} [-h] [--config-dir DIR]")
    assert COMMANDS[name].summary in proc.stdout and proc.stderr == ""


def test_run_help_is_hydras_with_the_packaged_config(tmp_path):
    proc = door("run", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "infersearch is powered by Hydra" in proc.stdout and "digits_cnn" in proc.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["frobnicate"], "infersearch: unknown command 'frobnicate'; allowed: run, report, serve, serve-tune"),
        (["--frobnicate"], "infersearch run: unrecognized arguments: --frobnicate"),
        (["run", "-m", "--frobnicate"], "infersearch run: unrecognized arguments: --frobnicate"),
        (["serve", "--frobnicate"], "infersearch serve: unrecognized arguments: --frobnicate"),
        (["report", "--config-dir"], "infersearch report: argument --config-dir/-cd: expected one argument"),
        (["alerts", "--config-dir", "no_such_folder"], "infersearch alerts: --config-dir: "),
        (["serve-tune", "model=no_such_model"], "infersearch serve-tune: In 'config': Could not find 'model/no_such"),
        (["report", "study.name=[["], "infersearch report: override 'study.name=[[': "),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, says):
    proc = door(*args, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(says) and proc.stderr.count("\n") == 1, proc.stderr


def test_report_of_a_study_with_no_trials_is_refused(tmp_path):
    proc = door("report", "study.name=nothing", "tracking=disabled", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.endswith("infersearch report: study.name: study 'nothing' has no trials in this storage\n")


def test_commands_compose_what_the_study_composes():
    """Hydra's own ``--config-dir`` (``infersearch --cfg job``) and the commands' compose give one config."""
    proc = run_cli("--config-dir", "tests/conf", "model=awkward", "study.n_trials=3", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr[-2000:]
    composed = compose(["model=awkward", "study.n_trials=3"], config_dir=str(ROOT / "tests" / "conf"))
    assert OmegaConf.to_yaml(composed) == proc.stdout
    assert composed.study.name == "awkward"  # the hydra: node behind it, as in the study
    with pytest.raises(ConfigError, match="--config-dir: .* is not a folder"):
        compose([], config_dir=str(ROOT / "no_such_folder"))
