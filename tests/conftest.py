"""Shared test fixtures. Tests use tiny shapes; anything slow is marked and kept short."""

import os
import sys

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import pathlib  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

MAIN = os.path.join(REPO, "main.py")
SMOKE_FLAGFILE = os.path.join(REPO, "flags", "smoke.cfg")
SMOKE_ITERATIONS = 4  # --iterations in flags/smoke.cfg


def run_main(*args, timeout=300):
    """Run `python main.py *args` with the repo as cwd: (returncode, stdout, stderr)."""
    proc = subprocess.run([sys.executable, MAIN, *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def run_main_here(*args):
    """main.py in this process: (returncode, stdout, stderr) as `run_main` gives them, without
    a fresh process's TensorFlow start (5-10 s on a 2-core machine). For runs that stop at
    validation of a flag or a file (bad input): runs that train, attack, configure devices or
    need a clean TensorFlow (--strategy, --cpu_devices) use `run_main`."""
    import contextlib
    import io

    from absl import flags

    from defense_gan import cli, cli_main
    if "mode" not in flags.FLAGS:
        cli.define_flags()
    out, err = io.StringIO(), io.StringIO()
    rc = 0
    cwd = os.getcwd()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            os.chdir(REPO)  # as run_main: relative paths are the repo's
            flags.FLAGS.unparse_flags()
            flags.FLAGS([MAIN, *map(str, args)])
            cli_main.main([MAIN])
        except flags.Error as error:  # absl's app.run prints this and exits 1
            print(f"FATAL Flags parsing error: {error}", file=sys.stderr)
            rc = 1
        except SystemExit as stop:
            rc = stop.code if isinstance(stop.code, int) else 1
        finally:
            os.chdir(cwd)
            flags.FLAGS.unparse_flags()
    return rc, out.getvalue(), err.getvalue()


def run_pipeline(root, *common, model, runner=None):
    """train_gan (2 iterations) -> train_classifier `model` -> whitebox FGSM through Defense-GAN
    with BPDA, through main.py with `common` flags, each writing under `root` (gan/,
    classifier/, whitebox/). Fails the test with the output of the first step that fails.
    runner: how main.py is run (default run_main)."""
    for name, flags in (
            ("gan", ("--mode=train_gan", "--iterations=2", f"--train_dir={root / 'gan'}")),
            ("classifier", ("--mode=train_classifier", f"--model={model}",
                            f"--train_dir={root / 'classifier'}")),
            ("whitebox", ("--mode=whitebox", f"--model={model}", "--defense=defense_gan",
                          "--gradient=bpda", "--attack=fgsm", f"--gan_dir={root / 'gan'}",
                          f"--classifier_dir={root / 'classifier'}",
                          f"--results_dir={root / 'whitebox'}"))):
        rc, out, err = (runner or run_main)(*common, *flags)
        assert rc == 0, f"{name} failed ({rc}):\n{out}\n{err}"
    return root


def smoke_args(train_dir, *extra):
    """Arguments of a smoke train_gan run into `train_dir`; `extra` flags come last (win)."""
    return (f"--flagfile={SMOKE_FLAGFILE}", "--mode=train_gan", f"--train_dir={train_dir}",
            *extra)


_LOG_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages)")


def error_line(stderr: str) -> str:
    """The one `error: ...` line main.py prints. Fails unless there is exactly one, with no
    traceback, and nothing but TensorFlow/absl log lines after it (no continuation lines)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(errors) == 1, f"expected one 'error:' line in stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    after = [line for line in lines[errors[0] + 1:] if not _LOG_LINE.match(line)]
    assert not after, f"the error message spans several lines:\n{stderr}"
    return lines[errors[0]]


def tree_digest(folder) -> dict:
    """{relative path: sha256} of every file under `folder`, and {path: "folder"} of every
    folder, so an empty folder left behind counts as a change."""
    folder = pathlib.Path(folder)
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest()
                                         if p.is_file() else "folder")
            for p in sorted(folder.rglob("*"))}


@dataclasses.dataclass(frozen=True)
class SmokeRun:
    train_dir: pathlib.Path
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> SmokeRun:
    """One `main.py --flagfile=flags/smoke.cfg --mode=train_gan` run, shared by the session.
    Read-only: tests that modify the folder use `smoke_copy`."""
    train_dir = tmp_path_factory.mktemp("smoke") / "train"
    rc, out, err = run_main(*smoke_args(train_dir))
    assert rc == 0, f"smoke run failed ({rc}):\n{out}\n{err}"
    return SmokeRun(train_dir, out, err)


@pytest.fixture
def smoke_copy(smoke_run, tmp_path) -> pathlib.Path:
    """A private copy of the smoke run's train_dir, free to modify."""
    target = tmp_path / "train"
    shutil.copytree(smoke_run.train_dir, target)
    return target


# --- tiny models for projection / defense tests ------------------------------------------------

TINY_LATENT_DIM = 8


@pytest.fixture(scope="session")
def tiny_generator():
    """The release's generator architecture at toy size: networks.Generator(latent_dim=8,
    dim=4), randomly initialised (seed 0). Its output barely depends on z, so use it where the
    projection's plumbing matters, not where gradient descent must make progress."""
    import keras
    from defense_gan import networks
    keras.utils.set_random_seed(0)
    return networks.build(networks.Generator(latent_dim=TINY_LATENT_DIM, dim=4),
                          (TINY_LATENT_DIM,))


@pytest.fixture(scope="session")
def tiny_classifier():
    """Classifier "E" (a 2-layer MLP), randomly initialised (seed 0)."""
    import keras
    from defense_gan import networks
    keras.utils.set_random_seed(0)
    return networks.build(networks.Classifier("E"), networks.MNIST_SHAPE)


# --- CLI runs of the other modes ---------------------------------------------------------------

# Model E (an MLP): the export measures validation and test accuracy on 20,000 images, which
# takes model A about 30 s longer on a busy 2-core machine.
SMOKE_CLASSIFIER_MODEL = "E"


@pytest.fixture(scope="session")
def smoke_classifier(tmp_path_factory) -> SmokeRun:
    """One `main.py --flagfile=flags/smoke.cfg --mode=train_classifier --model=E` run, shared
    by the session. Read-only: copy it before modifying anything."""
    train_dir = tmp_path_factory.mktemp("smoke_classifier") / "train"
    rc, out, err = run_main(f"--flagfile={SMOKE_FLAGFILE}", "--mode=train_classifier",
                            f"--model={SMOKE_CLASSIFIER_MODEL}", f"--train_dir={train_dir}")
    assert rc == 0, f"smoke classifier run failed ({rc}):\n{out}\n{err}"
    return SmokeRun(train_dir, out, err)


@pytest.fixture(scope="session")
def smoke_magnet(tmp_path_factory):
    """A train_magnet smoke run (64 images, 8 steps, thresholds at FPR 0.01, one export),
    shared by the session; its export folder is a --magnet_dir. Read-only."""
    train_dir = tmp_path_factory.mktemp("magnet") / "train"
    rc, out, err = run_main(f"--flagfile={SMOKE_FLAGFILE}", "--mode=train_magnet",
                            f"--train_dir={train_dir}", "--magnet_batch_size=16",
                            "--magnet_epochs=2", "--checkpoint_every=8", "--magnet_fpr=0.01")
    assert rc == 0, f"train_magnet failed ({rc}):\n{out}\n{err}"
    return train_dir


def dense_generator(seed: int, latent: int = 8, shape=(28, 28, 1)):
    """z [N, latent] -> sigmoid(W z + b) as [N, *shape], W ~ N(0, 1). Unlike the toy release
    architecture its output depends strongly on z and the loss is nearly convex in z, so a few
    gradient steps make real progress, restarts end at different MSEs, and a point of its
    range is recovered exactly."""
    import keras
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((latent,)),
        keras.layers.Dense(int(np.prod(shape)), activation="sigmoid",
                           kernel_initializer=keras.initializers.RandomNormal(stddev=1.0)),
        keras.layers.Reshape(shape)])
