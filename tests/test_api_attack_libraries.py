"""ART and foolbox attack `defense_gan.DefendedClassifier` directly, and FGSM through BPDA gives
what `--mode=whitebox --defense=defense_gan --gradient=bpda --attack=fgsm` gives on the same
images and seed: the same defended prediction and perturbation size for every image.

Shipped classifier F and generator, 8 test images in chunks of 4, L=3, R=2 (tiny: the numbers
mean nothing, the equality does)."""

import json

import numpy as np
import pytest
import tensorflow as tf

import defense_gan
from defense_gan import config, data
from defense_gan.modes import whitebox

N, CHUNK, L, R, EPS, SEED = 8, 4, 3, 2, 0.3, 0


@pytest.fixture(scope="module")
def whitebox_records(tmp_path_factory):
    """Per-image records of the command line's FGSM-through-BPDA run, in index order."""
    results_dir = tmp_path_factory.mktemp("api_whitebox") / "run"
    # The mode's own run(), in this process (a subprocess would import TensorFlow again).
    whitebox.run(config.validate(config.Config(
        mode="whitebox", model="F", defense="defense_gan", gradient="bpda", attack="fgsm",
        fgsm_eps=EPS, num_tests=N, eval_batch_size=CHUNK, rec_iters=L, rec_rr=R, seed=SEED,
        results_dir=str(results_dir))))
    records = []
    for path in sorted((results_dir / "records").glob("batch_*.json")):
        records += json.loads(path.read_text())["records"]
    assert [r["index"] for r in records] == list(range(N))
    return records


@pytest.fixture(scope="module")
def defended():
    purifier = defense_gan.Purifier(defense_gan.load_generator("mnist"), rec_iters=L,
                                    rec_rr=R, batch_size=CHUNK, seed=SEED)
    return defense_gan.DefendedClassifier(defense_gan.load_classifier("F"), purifier,
                                          gradient="bpda")


@pytest.fixture(scope="module")
def test_images():
    splits = data.load("mnist")
    return data.to_float(splits.x_test[:N]).numpy(), splits.y_test[:N]


def _check_same_as_whitebox(model, x, x_adv, labels, records):
    assert np.abs(x_adv - x).max() == pytest.approx(EPS, abs=1e-6)  # the attack moved x
    preds = model.predict_labels(x_adv)
    assert preds.tolist() == [r["pred_adv_defended"] for r in records]
    l2 = np.sqrt(((x_adv - x) ** 2).reshape(N, -1).sum(axis=1))
    np.testing.assert_allclose(l2, [r["l2"] for r in records], rtol=1e-5)
    accuracy = float(np.mean(preds == labels))
    assert accuracy == np.mean([r["pred_adv_defended"] == r["label"] for r in records])


def test_art_fgsm_on_the_defended_classifier_matches_the_whitebox_mode(
        defended, test_images, whitebox_records):
    from art.attacks.evasion import FastGradientMethod
    from art.estimators.classification import TensorFlowV2Classifier
    x, y = test_images
    estimator = TensorFlowV2Classifier(
        model=defended, nb_classes=10, input_shape=(28, 28, 1), clip_values=(0.0, 1.0),
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # batch_size=N: one call, so chunk k of the call is the command line's batch k.
    x_adv = FastGradientMethod(estimator, norm=np.inf, eps=EPS, batch_size=N).generate(x)
    _check_same_as_whitebox(defended, x, x_adv, y, whitebox_records)


def test_foolbox_fgsm_on_the_defended_classifier_matches_the_whitebox_mode(
        defended, test_images, whitebox_records):
    import foolbox
    x, y = test_images
    model = foolbox.TensorFlowModel(defended, bounds=(0.0, 1.0))
    # The command line's FGSM attacks the defended prediction on x (CleverHans' default).
    labels = tf.constant(defended.predict_labels(x))
    _, x_adv, _ = foolbox.attacks.FGSM()(model, tf.constant(x), labels, epsilons=EPS)
    _check_same_as_whitebox(defended, x, x_adv.numpy(), y, whitebox_records)


def test_readme_python_api_example_runs_as_written_at_tiny_settings():
    import contextlib
    import io
    import os
    import re
    with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")) as f:
        readme = f.read()
    section = readme.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    faithful = "rec_iters=200, rec_rr=10"
    assert faithful in code
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace(faithful, f"rec_iters={L}, rec_rr={R}"), "README.md", "exec"),
             {"__name__": "readme_example"})
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines[-2:]] == ["defended", "FGSM"]
    for line in lines[-2:]:
        assert 0.0 <= float(line.split()[-1]) <= 1.0
