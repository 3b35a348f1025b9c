"""pyproject.toml: dependencies equal requirements.txt, the console script and
`python -m defense_gan` run the command line, and an installed copy of the package (no
checkout around it) finds its bundled checkpoints and data and writes under the current
directory. (`pip install .` itself is verified by hand in a fresh venv: see README.)"""

import fnmatch
import os
import shutil
import subprocess
import sys
import tomllib

from conftest import REPO

import defense_gan
from defense_gan import cli_main, paths


def _pyproject():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_pyproject_pins_exactly_the_runtime_requirements():
    with open(os.path.join(REPO, "requirements.txt")) as f:
        pins = sorted(line.strip() for line in f if line.strip() and not line.startswith("#"))
    project = _pyproject()["project"]
    assert sorted(project["dependencies"]) == pins
    assert project["version"] == defense_gan.__version__


def test_console_script_is_the_command_line_entry_point():
    target = _pyproject()["project"]["scripts"]["defense-gan"]
    module, name = target.split(":")
    assert module == cli_main.__name__ and getattr(cli_main, name) is cli_main.run


def test_package_data_ships_every_inference_checkpoint_and_data_file_but_no_training_state():
    config = _pyproject()["tool"]["setuptools"]
    shipped = {}
    for package, folder in config["package-dir"].items():
        root = os.path.join(REPO, folder)
        files = [os.path.relpath(os.path.join(d, n), root)
                 for d, _, names in os.walk(root) for n in names]
        excluded = config.get("exclude-package-data", {}).get(package, [])
        shipped[folder] = {f for f in files if any(
            fnmatch.fnmatch(f, p) and f.count(os.sep) == p.count("/")
            for p in config["package-data"][package])
            and not any(fnmatch.fnmatch(f, p) for p in excluded)}
        assert shipped[folder], folder
    needed = {os.path.relpath(os.path.join(d, n), os.path.join(REPO, "checkpoints"))
              for d, _, names in os.walk(os.path.join(REPO, "checkpoints"))
              for n in names if "training_state" not in d}
    assert needed == shipped["checkpoints"]
    assert "mnist/t10k-images-idx3-ubyte.gz" in shipped["data"]


def _run(args, cwd, env=None):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_python_m_defense_gan_help_lists_the_flags_and_exits_0_from_another_directory(
        tmp_path):
    proc = _run(["-m", "defense_gan", "--help"], tmp_path, {"PYTHONPATH": REPO})
    assert proc.returncode == 0, proc.stderr
    assert "--checkpoints_dir" in proc.stdout and "--mode" in proc.stdout


def test_an_installed_copy_finds_its_bundled_files_and_writes_under_the_current_directory(
        tmp_path):
    site = tmp_path / "site-packages"
    shutil.copytree(os.path.join(REPO, "defense_gan"), site / "defense_gan",
                    ignore=shutil.ignore_patterns("__pycache__"))
    work = tmp_path / "work"
    work.mkdir()
    code = ("from defense_gan import paths, config; "
            "print(paths.in_source_checkout(), paths.checkpoints_root(), paths.data_root(), "
            "config.REPO_ROOT)")
    env = {"PYTHONPATH": str(site)}
    for key in (paths.CHECKPOINTS_ENV, paths.DATA_ENV):
        env[key] = ""
    proc = _run(["-c", code], work, env)
    assert proc.returncode == 0, proc.stderr
    bundled = site / "defense_gan" / "_bundled"
    assert proc.stdout.split() == ["False", str(bundled / "checkpoints"), str(bundled / "data"),
                                   str(work)]
    env[paths.CHECKPOINTS_ENV] = str(tmp_path / "mine")
    proc = _run(["-c", code], work, env)
    assert proc.stdout.split()[1] == str(tmp_path / "mine")
