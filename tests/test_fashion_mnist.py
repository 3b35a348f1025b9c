"""--dataset=fashion_mnist through main.py: train_gan (2 iterations), train_classifier (1 epoch
on 64 images) and whitebox with Defense-GAN on the bundled Fashion-MNIST (flags/smoke.cfg);
blackbox and detect on the shipped Fashion-MNIST checkpoints; and the refusal of a checkpoint
trained on another data set (the shipped MNIST generator)."""

import json

import numpy as np
import pytest

from conftest import (REPO, run_main, SMOKE_CLASSIFIER_MODEL as MODEL, SMOKE_FLAGFILE, error_line,
                      run_main_here, run_pipeline, tree_digest)
from defense_gan import data

COMMON = (f"--flagfile={SMOKE_FLAGFILE}", "--dataset=fashion_mnist")


@pytest.fixture(scope="module")
def fashion_e2e(tmp_path_factory):
    root = tmp_path_factory.mktemp("fashion_e2e")
    run_pipeline(root, *COMMON, model=MODEL)
    return root


def test_fashion_mnist_checkpoints_are_exported_for_fashion_mnist(fashion_e2e):
    for name, kind in (("gan", "generator"), ("classifier", "classifier")):
        manifest = json.loads((fashion_e2e / name / "export" / "manifest.json").read_text())
        assert (manifest["kind"], manifest["dataset"]) == (kind, "fashion_mnist")
    gan = json.loads((fashion_e2e / "gan" / "export" / "manifest.json").read_text())
    assert gan["architecture"] == "release_mnist_generator" and gan["iterations"] == 2


def test_fashion_mnist_whitebox_evaluates_the_first_fashion_test_images(fashion_e2e):
    result = json.loads((fashion_e2e / "whitebox" / "results.json").read_text())
    assert result["flags"]["dataset"] == "fashion_mnist"
    assert result["metrics"]["num_images"] == 8
    with np.load(fashion_e2e / "whitebox" / "records" / "examples.npz") as f:
        clean = f["arr_0"]
    # The clean row is Fashion-MNIST's test set, not MNIST's.
    fashion = data.to_float(data.load("fashion_mnist").x_test[:len(clean)]).numpy()
    np.testing.assert_array_equal(clean, fashion)


def test_the_mnist_generator_is_refused_for_fashion_mnist_in_one_line_writing_nothing(
        fashion_e2e, tmp_path):
    mnist_gan = f"{REPO}/checkpoints/mnist/gan"
    results_dir = tmp_path / "results"
    before = tree_digest(tmp_path)
    rc, _, err = run_main_here(*COMMON, "--mode=whitebox", f"--model={MODEL}",
                          "--defense=defense_gan", f"--gan_dir={mnist_gan}",
                          f"--classifier_dir={fashion_e2e / 'classifier'}",
                          f"--results_dir={results_dir}")
    assert rc == 2
    line = error_line(err)
    assert line.startswith("error: --gan_dir: ")
    assert "'mnist'" in line and "--dataset=fashion_mnist" in line
    assert tree_digest(tmp_path) == before and not results_dir.exists()


@pytest.fixture(scope="module")
def fashion_blackbox_then_detect(tmp_path_factory):
    """(blackbox results, detect results): a smoke black-box run through Defense-GAN on the
    shipped Fashion-MNIST generator and classifier F, then detect on its adversarial images."""
    root = tmp_path_factory.mktemp("fashion_bb")
    rc, out, err = run_main(*COMMON, "--mode=blackbox", "--model=F", "--sub_model=E",
                            "--defense=defense_gan", "--oracle_rec_iters=3",
                            "--oracle_rec_rr=2", f"--results_dir={root / 'bb'}")
    assert rc == 0, f"{out}\n{err}"
    rc, out, err = run_main(*COMMON, "--mode=detect", "--model=F", "--detect_val=8",
                            "--nodetect_whitebox", f"--adv_sources={root / 'bb'}",
                            f"--results_dir={root / 'detect'}")
    assert rc == 0, f"{out}\n{err}"
    return tuple(json.loads((root / name / "results.json").read_text())
                 for name in ("bb", "detect"))


def test_fashion_mnist_blackbox_runs_on_the_shipped_fashion_checkpoints(
        fashion_blackbox_then_detect):
    result, _ = fashion_blackbox_then_detect
    assert result["flags"]["dataset"] == "fashion_mnist"
    used = result["settings"]["checkpoints"]
    assert used["generator"]["folder"].endswith("checkpoints/fashion_mnist/gan")
    assert used["classifier"]["folder"].endswith("checkpoints/fashion_mnist/classifier_F")
    assert result["metrics"]["num_images"] == 8


def test_fashion_mnist_detect_scores_the_fashion_blackbox_images(fashion_blackbox_then_detect):
    _, result = fashion_blackbox_then_detect
    assert result["flags"]["dataset"] == "fashion_mnist"
    (curve,) = result["curves"]
    assert curve["n_attacked"] == 8 and 0.0 <= curve["auc"] <= 1.0
