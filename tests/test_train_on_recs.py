"""--mode=train_classifier --train_on_recs (Defense-GAN-Rec) from the command line, and the
folder names of Rec and adversarially trained classifiers. Smoke flags: 64 training images,
the session's smoke generator, L=3, R=2 for the training-set projection."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import SMOKE_FLAGFILE, error_line, run_main, run_main_here, tree_digest
from defense_gan import classifiers, config, data
from defense_gan.config import Config
from defense_gan.modes import train_classifier, whitebox

RECS_FLAGS = ("--recs_rec_iters=3", "--recs_rec_rr=2", "--recs_rec_prune_at=0",
              "--recs_chunk_size=16", "--recs_validation=0", "--precision=float32")


def train_on_recs(train_dir, recs_dir, gan_dir, *extra):
    return run_main(f"--flagfile={SMOKE_FLAGFILE}", "--mode=train_classifier", "--model=E",
                    "--train_on_recs", f"--train_dir={train_dir}", f"--recs_dir={recs_dir}",
                    f"--gan_dir={gan_dir}", *RECS_FLAGS, *extra)


class ZeroProjector:
    """Stands in for the projection: every 'reconstruction' is a black image."""

    def __init__(self, batch_size):
        self.settings = type("S", (), {"batch_size": batch_size})()

    def __call__(self, x, seed):
        return tf.zeros_like(x), None, tf.zeros([len(x)])


def test_the_classifier_trains_on_the_cached_reconstructions_not_on_clean_images(
        smoke_run, tmp_path):
    """The cache is filled beforehand with black images under the run's own key. On black
    inputs the first layer's kernel gets a zero gradient (and Adam a zero step), so it must
    end exactly at its initialisation; on clean images it would move."""
    recs_dir = tmp_path / "recs"
    cfg = Config(mode="train_classifier", model="E", train_on_recs=True, gan_dir=str(
        smoke_run.train_dir), recs_dir=str(recs_dir), recs_rec_iters=3, recs_rec_rr=2,
        recs_rec_prune_at=0.0, recs_chunk_size=16, recs_validation=0, eval_batch_size=4,
        train_limit=64, batch_size=8)
    cache, _, _ = train_classifier.reconstruction_source(cfg)
    images = data.to_float(data.load("mnist", train_limit=64).x_train).numpy()
    cache.build("train", images, ZeroProjector(4), 0, 16, progress=lambda m: None)
    rc, out, err = train_on_recs(tmp_path / "train", recs_dir, smoke_run.train_dir)
    assert rc == 0, f"{out}\n{err}"
    assert "[recs]" not in out  # every chunk came from the cache
    trained, manifest = classifiers.load_classifier(str(tmp_path / "train"), "mnist", "E")
    initial = classifiers.build_trainer("E", seed=0).classifier
    np.testing.assert_array_equal(trained.layer1.kernel.numpy(), initial.layer1.kernel.numpy())
    # ... while training did run: the logits' bias (the only weight a black image reaches
    # through ReLUs of zero-initialised biases) moved.
    assert not np.array_equal(trained.layer3.bias.numpy(), initial.layer3.bias.numpy())
    assert manifest["trained_on"].startswith("reconstructions")
    assert manifest["reconstructions"]["projection"]["rec_iters"] == 3
    assert manifest["reconstructions"]["folder"] == str(recs_dir)


def test_a_run_builds_the_cache_with_progress_and_records_the_validation_rec_accuracy(
        smoke_run, tmp_path):
    rc, out, err = train_on_recs(tmp_path / "train", tmp_path / "recs", smoke_run.train_dir,
                                 "--recs_validation=8")
    assert rc == 0, f"{out}\n{err}"
    assert "[recs] train: chunk 4/4 (64/64 images) written" in out and "min left" in out
    manifest = json.loads((tmp_path / "train" / "export" / "manifest.json").read_text())
    assert manifest["metrics"]["validation_rec_images"] == 8
    assert 0.0 <= manifest["metrics"]["validation_rec_accuracy"] <= 1.0
    assert {"validation_accuracy", "test_accuracy"} <= set(manifest["metrics"])


def test_a_cache_of_another_generator_is_refused_and_nothing_is_written(smoke_run, tmp_path):
    recs_dir = tmp_path / "recs"
    recs_dir.mkdir()
    key = {"generator": {"weights.index": "0" * 64}, "rec_iters": 3}
    (recs_dir / "key.json").write_text(json.dumps(key))
    before = tree_digest(tmp_path)
    rc, _, err = train_on_recs(tmp_path / "train", recs_dir, smoke_run.train_dir)
    assert rc != 0
    assert error_line(err).startswith(f"error: --recs_dir: '{recs_dir}' holds reconstructions "
                                      "made with other settings (")
    assert tree_digest(tmp_path) == before and not (tmp_path / "train").exists()


def test_train_on_recs_with_adv_train_is_refused_naming_the_flag(tmp_path):
    rc, _, err = run_main_here(f"--flagfile={SMOKE_FLAGFILE}", "--mode=train_classifier",
                          "--train_on_recs", "--adv_train", f"--train_dir={tmp_path / 't'}")
    assert rc != 0 and error_line(err).startswith("error: --train_on_recs: cannot be combined")
    assert not (tmp_path / "t").exists()


# --- folder names -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,name", [
    ({}, "classifier_A"),
    ({"adv_train": True}, "classifier_A_adv"),
    ({"adv_train": True, "adv_train_eps": 0.3}, "classifier_A_adv0.3"),
    ({"train_on_recs": True}, "classifier_A_rec"),
])
def test_default_train_dirs_name_the_variant_and_keep_adv_for_eps_0_15(kwargs, name):
    cfg = Config(mode="train_classifier", model="A", **kwargs)
    assert cfg.resolved_train_dir() == f"{config.REPO_ROOT}/runs/mnist/{name}"


def test_defense_adv_tr_selects_the_shipped_classifier_by_adv_train_eps():
    shipped = f"{config.REPO_ROOT}/checkpoints/mnist"
    assert Config(model="B").resolved_classifier_dir(adv=True) == f"{shipped}/classifier_B_adv"
    assert Config(model="B", adv_train_eps=0.3).resolved_classifier_dir(adv=True) == \
        f"{shipped}/classifier_B_adv0.3"
    assert Config(model="B").resolved_classifier_dir(rec=True) == f"{shipped}/classifier_B_rec"


def test_whitebox_run_names_keep_the_old_names_and_add_eps_and_rec():
    assert whitebox.run_name(Config(model="A", defense="adv_tr")) == "A_adv_tr_fgsm_eps0.3_n1000"
    assert whitebox.run_name(Config(model="A", defense="adv_tr", adv_train_eps=0.3)) == \
        "A_adv_tr0.3_fgsm_eps0.3_n1000"
    assert whitebox.run_name(Config(model="A", rec_classifier=True)) == \
        "A_defense_gan_rec_classifier_L200_R10_fgsm_eps0.3_n1000"
    assert whitebox.run_name(Config(model="A", defense="magnet")) == \
        "A_magnet_full_fpr0.001_fgsm_eps0.3_n1000"


def test_shipped_classifier_names_are_unchanged():
    assert Config(model="F").resolved_classifier_dir() == \
        f"{config.REPO_ROOT}/checkpoints/mnist/classifier_F"
    keras.backend.clear_session()
