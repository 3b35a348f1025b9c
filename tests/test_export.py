"""--mode=export: a SavedModel that TensorFlow alone reloads (no defense_gan in the process)
and that gives the Python API's outputs. Shipped classifier F and generator, L=3, R=2, chunks
of 4 images."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import error_line, run_main_here, tree_digest

import defense_gan
from defense_gan import config, data, savedmodel
from defense_gan.modes import export

L, R, CHUNK, SEED = 3, 2, 4, 3

RELOAD = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    folder, inputs, outputs = sys.argv[1:]
    model = tf.saved_model.load(folder)
    x = tf.constant(np.load(inputs)["x"])
    seed = tf.constant(int(np.load(inputs)["seed"]))
    out = {"purified": model.signatures["purify"](images=x, seed=seed)["purified"],
           "mse": model.signatures["reconstruction_error"](images=x, seed=seed)["mse"],
           "logits": model.signatures["classify"](images=x, seed=seed)["logits"]}
    try:
        model.signatures["purify"](images=x * 2.0, seed=seed)
        refused = False
    except tf.errors.InvalidArgumentError:
        refused = True
    loaded = [m for m in sys.modules if m.split(".")[0] == "defense_gan"]
    np.savez(outputs, refused=refused, loaded=np.array(loaded, dtype=str),
             **{k: v.numpy() for k, v in out.items()})
""")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export") / "mnist"
    export.run(config.validate(config.Config(
        mode="export", model="F", rec_iters=L, rec_rr=R, eval_batch_size=CHUNK,
        export_dir=str(folder))))
    return folder


@pytest.fixture(scope="module")
def reloaded(exported, tmp_path_factory):
    """Outputs of the SavedModel in a fresh process that never imports defense_gan."""
    work = tmp_path_factory.mktemp("reload")
    x = data.to_float(data.load("mnist").x_test[:6]).numpy()  # chunks of 4 + 2 (padded)
    np.savez(work / "in.npz", x=x, seed=SEED)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", RELOAD, str(exported), str(work / "in.npz"),
                           str(work / "out.npz")], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with np.load(work / "out.npz") as f:
        return x, dict(f)


def test_the_reloading_process_never_imports_defense_gan(reloaded):
    assert reloaded[1]["loaded"].tolist() == []


def test_reloaded_savedmodel_gives_the_python_api_outputs(reloaded):
    x, out = reloaded
    purifier = defense_gan.Purifier(defense_gan.load_generator("mnist"), rec_iters=L,
                                    rec_rr=R, batch_size=CHUNK, seed=SEED)
    np.testing.assert_allclose(out["purified"], purifier.purify(x), atol=1e-6)
    np.testing.assert_allclose(out["mse"], purifier.reconstruction_error(x), rtol=1e-5)
    assert np.abs(out["purified"] - x).max() > 0.1  # the projection did something
    logits = defense_gan.DefendedClassifier(defense_gan.load_classifier("F"), purifier)(x)
    np.testing.assert_allclose(out["logits"], logits.numpy(), atol=1e-4)


def test_reloaded_savedmodel_refuses_pixels_outside_0_1(reloaded):
    assert bool(reloaded[1]["refused"])


def test_export_records_settings_and_checkpoints_and_leaves_no_temporary_folder(exported):
    info = json.loads((exported / savedmodel.INFO).read_text())
    assert info["dataset"] == "mnist" and info["model"] == "F"
    assert (info["projection"]["rec_iters"], info["projection"]["rec_rr"],
            info["projection"]["batch_size"]) == (L, R, CHUNK)
    assert set(info["checkpoints"]) == {"generator", "classifier"}
    assert set(info["signatures"]) == set(savedmodel.SIGNATURES)
    assert not [n for n in os.listdir(exported.parent) if n.startswith(".tmp-")]


def test_export_dir_that_is_a_file_is_refused_naming_the_flag(tmp_path):
    target = tmp_path / "file"
    target.write_text("not a folder")
    before = tree_digest(tmp_path)
    rc, _, err = run_main_here("--mode=export", f"--export_dir={target}")
    assert rc == 2 and "--export_dir" in error_line(err)
    assert tree_digest(tmp_path) == before
