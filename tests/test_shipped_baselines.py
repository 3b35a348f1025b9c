"""The shipped MNIST baselines of issue 13 through main.py: MagNet (`--defense=magnet`, the
default --magnet_dir) and a Defense-GAN-Rec classifier (`--rec_classifier`) load from
checkpoints/mnist and run end to end (smoke flags: 8 images, L=3, R=2)."""

import json
import os

from conftest import REPO, SMOKE_FLAGFILE, run_main

SHIPPED = os.path.join(REPO, "checkpoints", "mnist")


def shipped_sha256(name):
    with open(os.path.join(SHIPPED, name, "manifest.json")) as f:
        return json.load(f)["files"]


def whitebox(results_dir, *flags):
    rc, out, err = run_main(f"--flagfile={SMOKE_FLAGFILE}", "--mode=whitebox", "--attack=fgsm",
                            f"--results_dir={results_dir}", *flags)
    assert rc == 0, f"{out}\n{err}"
    with open(results_dir / "results.json") as f:
        return json.load(f)


def test_shipped_magnet_rejects_fgsm_at_eps_0_3_on_the_shipped_classifier(tmp_path):
    result = whitebox(tmp_path / "run", "--defense=magnet", "--model=A")
    magnet = result["settings"]["checkpoints"]["magnet"]
    assert magnet["folder"] == os.path.join(SHIPPED, "magnet")
    assert magnet["sha256"] == shipped_sha256("magnet")
    # RESULTS.md: the shipped MagNet rejects 1000 of 1000 such images (counted as handled).
    assert result["metrics"]["rejected_adversarial_fraction"] == 1.0
    assert result["metrics"]["mean_linf"] > 0.29  # the attack moved the images


def test_rec_classifier_flag_evaluates_the_shipped_rec_checkpoint_behind_defense_gan(tmp_path):
    result = whitebox(tmp_path / "run", "--defense=defense_gan", "--gradient=classifier",
                      "--rec_classifier", "--model=F")
    settings = result["settings"]
    assert settings["classifier_variant"] == "rec"
    classifier = settings["checkpoints"]["classifier"]
    assert classifier["folder"] == os.path.join(SHIPPED, "classifier_F_rec")
    assert classifier["sha256"] == shipped_sha256("classifier_F_rec")
    assert (settings["rec_iters"], settings["rec_rr"]) == (3, 2)
    assert result["metrics"]["num_images"] == 8
