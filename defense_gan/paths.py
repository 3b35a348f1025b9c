"""Where the shipped checkpoints and data are, and where runs write, in a source checkout and in
an installed package (`pip install .`).

- Source checkout (main.py beside the package, e.g. `python main.py` or `pip install -e .`):
  checkpoints/, data/, results/, runs/ and exports/ of the repository, as always.
- Installed package: pyproject.toml copies the shipped inference checkpoints (not the GAN's
  training state) and the bundled data sets into the package as `defense_gan/_bundled/
  {checkpoints,data}`, so the installed `defense-gan` finds them from any directory; what a
  run writes (results/, runs/, exports/) goes under the current directory.

Either root can be overridden: `--checkpoints_dir` (or the `checkpoints_dir` argument of the
Python API), else the environment variable DEFENSE_GAN_CHECKPOINTS; for data `--data_dir` (one
data set's folder), else DEFENSE_GAN_DATA (the folder holding <dataset>/).
"""

import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(PACKAGE_DIR)
BUNDLED_DIR = os.path.join(PACKAGE_DIR, "_bundled")
CHECKPOINTS_ENV = "DEFENSE_GAN_CHECKPOINTS"
DATA_ENV = "DEFENSE_GAN_DATA"


def in_source_checkout() -> bool:
    """True when the package runs from the repository (main.py and checkpoints/ beside it)."""
    return (os.path.isfile(os.path.join(SOURCE_ROOT, "main.py"))
            and os.path.isdir(os.path.join(SOURCE_ROOT, "checkpoints")))


def _root(name: str, override: str | None, env: str) -> str:
    if override:
        return override
    if os.environ.get(env):
        return os.environ[env]
    if in_source_checkout():
        return os.path.join(SOURCE_ROOT, name)
    return os.path.join(BUNDLED_DIR, name)


def checkpoints_root(override: str | None = None) -> str:
    """The folder holding <dataset>/{gan,classifier_<model>[_adv]}/ (the shipped checkpoints)."""
    return _root("checkpoints", override, CHECKPOINTS_ENV)


def data_root(override: str | None = None) -> str:
    """The folder holding <dataset>/ with the bundled IDX files."""
    return _root("data", override, DATA_ENV)


def output_root() -> str:
    """Where results/, runs/ and exports/ go by default: the repository in a source checkout,
    else the current directory (never inside site-packages)."""
    return SOURCE_ROOT if in_source_checkout() else os.path.abspath(os.getcwd())
