"""`main.py --mode=blackbox` end to end with flags/smoke.cfg (8 initial points, 2 rounds of 2
epochs, 8 evaluated images in batches of 4, L=3, R=2), the session's smoke GAN and smoke
classifier (model E): what a run writes, the substitute shared between defenses, resuming a
killed run, and one-line refusals of bad input."""

import json
import shutil

import numpy as np
import pytest

from conftest import (SMOKE_CLASSIFIER_MODEL, SMOKE_FLAGFILE, error_line, run_main, run_main_here,
                      tree_digest)

INIT, NUM_TESTS, EVAL_BATCH = 8, 8, 4  # flags/smoke.cfg


def blackbox(results_dir, gan_dir, classifier_dir, *extra, runner=run_main):
    return runner(f"--flagfile={SMOKE_FLAGFILE}", "--mode=blackbox",
                    f"--model={SMOKE_CLASSIFIER_MODEL}", "--sub_model=E",
                    f"--gan_dir={gan_dir}", f"--classifier_dir={classifier_dir}",
                    f"--results_dir={results_dir}", *extra)


def read_results(results_dir) -> dict:
    return json.loads((results_dir / "results.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory, smoke_run, smoke_classifier):
    """{defense: (results_dir, stdout)}: --defense=none, then --defense=defense_gan in the same
    parent folder (so they may share the substitute)."""
    parent = tmp_path_factory.mktemp("blackbox")
    out = {}
    for defense in ("none", "defense_gan"):
        rc, stdout, err = blackbox(parent / defense, smoke_run.train_dir,
                                   smoke_classifier.train_dir, f"--defense={defense}")
        assert rc == 0, f"blackbox --defense={defense} failed ({rc}):\n{stdout}\n{err}"
        out[defense] = (parent / defense, stdout)
    return out


def test_a_run_reports_the_substitute_rounds_queries_and_wilson_intervals(runs):
    result = read_results(runs["none"][0])
    rounds = result["substitute_rounds"]
    assert [r["train_size"] for r in rounds] == [INIT, 2 * INIT]
    assert [r["oracle_queries"] for r in rounds] == [0, INIT]  # initial labels are true ones
    assert result["oracle_queries"] == INIT
    for r in rounds:
        low, high = r["substitute_accuracy_ci95"]
        assert low <= r["substitute_accuracy"] <= high
    m = result["metrics"]
    assert m["num_images"] == NUM_TESTS
    assert m["adversarial_accuracy_ci95"][0] <= m["adversarial_accuracy"]
    assert m["mean_linf"] == pytest.approx(0.3, abs=1e-5)  # FGSM on the substitute moved x
    assert result["settings"]["test_images"] == f"test[{INIT}:{INIT + NUM_TESTS}]"


def test_by_default_the_substitute_of_an_undefended_model_is_labelled_through_defense_gan(runs):
    oracle = read_results(runs["none"][0])["settings"]["oracle"]
    assert oracle["labels"] == "defended" and oracle["labelling_defense"] == "defense_gan"
    assert "release" in oracle["quirk"]
    assert (oracle["rec_iters"], oracle["rec_rr"]) == (3, 2)


def test_defense_gan_reuses_the_substitute_of_the_same_oracle_and_asks_nothing(runs):
    none, gan = (read_results(runs[d][0]) for d in ("none", "defense_gan"))
    assert "oracle labelled" not in runs["defense_gan"][1]
    assert gan["settings"]["checkpoints"]["substitute"] == \
        none["settings"]["checkpoints"]["substitute"]
    assert gan["substitute_rounds"] == none["substitute_rounds"]
    m = gan["metrics"]
    assert 0 < m["mean_mse_clean"] < 1 and 0 < m["mean_mse_adv"] < 1
    assert m["defended_clean_accuracy"] is not None


def test_the_releases_augmentation_trains_its_own_substitute_and_says_so(
        runs, smoke_run, smoke_classifier, tmp_path):
    # In a copy of the shared runs' folder (other tests count its substitutes), whose default
    # substitute it must not reuse.
    parent = tmp_path / "copy"
    shutil.copytree(runs["none"][0].parent, parent, symlinks=True)
    rc, out, err = blackbox(parent / "none_aug", smoke_run.train_dir, smoke_classifier.train_dir,
                            "--defense=none", "--sub_augmentation=cleverhans2017")
    assert rc == 0, f"{out}\n{err}"
    assert "oracle labelled" in out  # not the default run's substitute
    assert len(list((parent / ".substitutes").iterdir())) == 2
    result = read_results(parent / "none_aug")
    assert result["settings"]["substitute"]["augmentation"].startswith("cleverhans2017: ")
    assert "augmentation" not in read_results(runs["none"][0])["settings"]["substitute"]
    assert result["oracle_queries"] == INIT  # the same query budget


def test_release_untrained_labels_through_an_untrained_generator_and_says_so(
        runs, smoke_run, smoke_classifier, tmp_path):
    parent = tmp_path / "copy"  # a copy: other tests count the shared folder's substitutes
    shutil.copytree(runs["none"][0].parent, parent, symlinks=True)
    rc, out, err = blackbox(parent / "untrained", smoke_run.train_dir,
                            smoke_classifier.train_dir, "--defense=none",
                            "--blackbox_labels=release_untrained")
    assert rc == 0, f"{out}\n{err}"
    assert "oracle labelled" in out  # not the default run's substitute
    settings = read_results(parent / "untrained")["settings"]
    assert settings["oracle"]["labels"] == "release_untrained"
    assert "untrained generator" in settings["oracle"]["quirk"]
    used = settings["substitute"]["oracle_checkpoints"]["generator"]
    trained = read_results(runs["none"][0])["settings"]["substitute"]["oracle_checkpoints"][
        "generator"]
    assert used["folder"] == "untrained (random init, seed 0)" and used["iterations"] == 0
    assert used["sha256"] != trained["sha256"]


def test_untrained_generators_of_one_seed_are_equal_and_of_two_seeds_differ():
    from defense_gan import gan
    shas = [gan.untrained_generator("mnist", "float32", seed, latent_dim=8)[1]["files"]
            for seed in (0, 0, 1)]
    assert shas[0] == shas[1] != shas[2]


def test_a_new_substitute_of_one_seed_starts_from_the_same_weights_and_of_two_seeds_not():
    from defense_gan.modes import blackbox as mode

    def initial(seed):
        return [w.numpy() for w in mode.new_substitute("B", seed).weights]
    first, again, other = initial(0), initial(0), initial(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_release_untrained_labels_with_defense_gan_are_refused_naming_the_flag():
    from defense_gan.config import Config, ConfigError, validate
    with pytest.raises(ConfigError, match="^--blackbox_labels: release_untrained reproduces"):
        validate(Config(mode="blackbox", defense="defense_gan",
                        blackbox_labels="release_untrained"))


def test_an_unknown_augmentation_from_the_api_is_refused_naming_the_flag():
    from defense_gan.config import Config, ConfigError, validate
    with pytest.raises(ConfigError, match="^--sub_augmentation: 'bogus' is not one of"):
        validate(Config(mode="blackbox", sub_augmentation="bogus"))


def test_records_use_test_set_indices_and_the_whitebox_keys(runs):
    batch = json.loads((runs["defense_gan"][0] / "records" / "batch_00000.json").read_text())
    record = batch["records"][0]
    assert record["index"] == INIT
    assert {"label", "pred_clean", "pred_adv", "pred_clean_defended", "pred_adv_defended",
            "mse_clean", "mse_adv"} <= set(record)


def test_adversarial_npz_holds_the_evaluated_images_labels_and_test_indices(runs):
    from defense_gan import data
    results_dir = runs["none"][0]
    with np.load(results_dir / "adversarial.npz") as f:
        x_adv, labels, indices = f["x_adv"], f["labels"], f["indices"]
    assert x_adv.dtype == np.float32 and x_adv.shape == (NUM_TESTS, 28, 28, 1)
    np.testing.assert_array_equal(indices, np.arange(INIT, INIT + NUM_TESTS))
    splits = data.load("mnist")
    np.testing.assert_array_equal(labels, splits.y_test[INIT:INIT + NUM_TESTS])
    clean = splits.x_test[INIT:INIT + NUM_TESTS].astype(np.float32) / 255.0
    linf = np.abs(x_adv - clean).reshape(NUM_TESTS, -1).max(axis=1)
    records = [r for k in range(2) for r in json.loads(
        (results_dir / "records" / f"batch_{k:05d}.json").read_text())["records"]]
    np.testing.assert_allclose(linf, [r["linf"] for r in records], atol=1e-6)


def test_the_run_writes_substitute_scalars_for_tensorboard(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(runs["none"][0] / "logs"))
    acc.Reload()
    tags = set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])
    assert {"substitute/accuracy", "substitute/oracle_queries"} <= tags


def test_a_killed_run_resumes_and_gives_the_same_results(runs, smoke_run, smoke_classifier,
                                                         tmp_path):
    first_dir = runs["defense_gan"][0]
    shutil.copytree(first_dir.parent, tmp_path / "copy", symlinks=True)
    results_dir = tmp_path / "copy" / "defense_gan"
    (tmp_path / "copy" / "none").rename(tmp_path / "copy" / "unused")
    # Killed while the oracle labelled round 1's second batch, before any evaluation.
    (sub,) = (tmp_path / "copy" / ".substitutes").iterdir()
    shutil.rmtree(sub / "round_01")
    (sub / "labels_00" / "batch_00001.npz").unlink()
    shutil.rmtree(results_dir / "records")
    (results_dir / "results.json").unlink()
    rc, out, err = blackbox(results_dir, smoke_run.train_dir, smoke_classifier.train_dir,
                            "--defense=defense_gan")
    assert rc == 0, err
    assert out.count("oracle labelled") == 1  # the missing batch only
    first, again = read_results(first_dir), read_results(results_dir)
    assert again["metrics"] == first["metrics"]
    assert again["settings"]["checkpoints"]["substitute"]["sha256"] == \
        first["settings"]["checkpoints"]["substitute"]["sha256"]


def test_a_finished_run_on_a_new_machine_is_kept_without_training_the_substitute(
        runs, smoke_run, smoke_classifier, tmp_path):
    # A new machine: the run folder is committed, the git-ignored substitute state is not.
    shutil.copytree(runs["none"][0], tmp_path / "none")
    before = (tmp_path / "none" / "results.json").read_bytes()
    rc, out, err = blackbox(tmp_path / "none", smoke_run.train_dir, smoke_classifier.train_dir,
                            "--defense=none")
    assert rc == 0, err
    assert "[blackbox] finished" in out and "round" not in out
    assert not (tmp_path / ".substitutes").exists()
    assert (tmp_path / "none" / "results.json").read_bytes() == before


def test_a_finished_run_asked_with_other_flags_is_run_again(runs, smoke_run, smoke_classifier,
                                                            tmp_path):
    shutil.copytree(runs["none"][0], tmp_path / "none")
    rc, out, err = blackbox(tmp_path / "none", smoke_run.train_dir, smoke_classifier.train_dir,
                            "--defense=none", "--fgsm_eps=0.2")
    assert rc == 0, err
    assert "[blackbox] finished" not in out
    assert read_results(tmp_path / "none")["metrics"]["mean_linf"] == pytest.approx(0.2, abs=1e-5)


def test_magnet_is_attacked_with_the_shared_substitute_and_counted_as_magnet_counts(
        runs, smoke_run, smoke_classifier, smoke_magnet):
    # Same parent folder as the `runs` fixture: the defended-label substitute is reused.
    results_dir = runs["none"][0].parent / "magnet"
    rc, out, err = blackbox(results_dir, smoke_run.train_dir, smoke_classifier.train_dir,
                            "--defense=magnet", f"--magnet_dir={smoke_magnet}",
                            "--magnet_fpr=0.01")
    assert rc == 0, f"{out}\n{err}"
    assert "oracle labelled" not in out
    result = read_results(results_dir)
    records = [r for f in sorted((results_dir / "records").glob("batch_*.json"))
               for r in json.loads(f.read_text())["records"]]
    handled = np.mean([r["rejected_adv"] or r["pred_adv_defended"] == r["label"]
                       for r in records])
    assert result["metrics"]["adversarial_accuracy"] == handled
    assert "rejected_adversarial_fraction" in result["metrics"]
    assert result["settings"]["defense"] == "magnet"
    assert result["settings"]["magnet_fpr"] == 0.01
    assert "magnet" in result["settings"]["checkpoints"]
    assert result["settings"]["checkpoints"]["substitute"] == \
        read_results(runs["none"][0])["settings"]["checkpoints"]["substitute"]


def test_a_magnet_oracle_answers_the_reformed_label(runs, smoke_run, smoke_classifier,
                                                    smoke_magnet, tmp_path):
    rc, out, err = blackbox(tmp_path / "run", smoke_run.train_dir, smoke_classifier.train_dir,
                            "--defense=magnet", f"--magnet_dir={smoke_magnet}",
                            "--magnet_fpr=0.01", "--blackbox_labels=target")
    assert rc == 0, f"{out}\n{err}"
    oracle = read_results(tmp_path / "run")["settings"]["oracle"]
    assert (oracle["labelling_defense"], oracle["defense"]) == ("magnet", "magnet")
    assert "reformer" in oracle["answers"]


@pytest.mark.parametrize("flags,name", [
    ({"defense": "adv_tr", "adv_train_eps": 0.3}, "A_adv_tr0.3_subB_oracleL100R10_prune0.25k2_eps0.3_n500"),
    ({"defense": "adv_tr"}, "A_adv_tr_subB_oracleL100R10_prune0.25k2_eps0.3_n500"),
    ({"defense": "defense_gan", "rec_classifier": True},
     "A_defense_gan_rec_subB_L200_R10_oracleL100R10_prune0.25k2_eps0.3_n500"),
    ({"defense": "magnet"}, "A_magnet_subB_fpr0.001_oracleL100R10_prune0.25k2_eps0.3_n500"),
    ({"defense": "none", "oracle_precision": "bfloat16"},
     "A_none_subB_oracleL100R10_prune0.25k2_bf16_eps0.3_n500"),
    ({"defense": "defense_gan", "sub_augmentation": "cleverhans2017"},
     "A_defense_gan_subB_L200_R10_oracleL100R10_prune0.25k2_augcleverhans2017_eps0.3_n500"),
], ids=["adv0.3", "adv0.15", "rec", "magnet", "bf16_oracle", "release_augmentation"])
def test_run_names_keep_apart_the_classifier_variants_of_table_1(flags, name):
    from defense_gan.config import Config
    from defense_gan.modes import blackbox as mode
    cfg = Config(mode="blackbox", model="A", sub_model="B", num_tests=500, **flags)
    assert mode.run_name(cfg) == name


def test_oracle_queries_are_fast_by_default_and_each_oracle_flag_overrides_its_part():
    from defense_gan.config import Config
    fast = Config(mode="blackbox").oracle_projection()
    assert fast == {"rec_iters": 100, "rec_rr": 10, "rec_prune_at": 0.25, "precision": "float32"}
    assert Config(mode="blackbox", oracle_fast=False).oracle_projection() == {
        "rec_iters": 200, "rec_rr": 10, "rec_prune_at": 0.0, "precision": "float32"}
    custom = Config(mode="blackbox", oracle_rec_iters=400, oracle_rec_prune_at=0.0)
    assert custom.oracle_projection()["rec_iters"] == 400
    assert custom.oracle_projection()["rec_prune_at"] == 0.0
    # Too few restarts to keep --rec_keep of them: no early stop rather than an error.
    assert Config(mode="blackbox", rec_iters=3, rec_rr=2).oracle_projection() == {
        "rec_iters": 3, "rec_rr": 2, "rec_prune_at": 0.0, "precision": "float32"}


@pytest.mark.parametrize("args,named", [
    (["--sub_model=Z"], ["--sub_model", "'Z'"]),
    (["--num_tests=9993"], ["--num_tests", "--sub_init_size", "9992"]),
    (["--oracle_rec_prune_at=1.5"], ["--oracle_rec_prune_at"]),
], ids=["sub_model_Z", "too_few_test_images", "oracle_prune_1.5"])
def test_bad_input_exits_2_with_one_error_line_and_writes_nothing(args, named, tmp_path,
                                                                   smoke_run, smoke_classifier):
    (tmp_path / "results").mkdir()
    before = tree_digest(tmp_path)
    rc, out, err = blackbox(tmp_path / "results" / "run", smoke_run.train_dir,
                            smoke_classifier.train_dir, "--defense=none", *args,
                            runner=run_main_here)
    assert rc == 2, f"{out}\n{err}"
    line = error_line(err)
    for text in named:
        assert text in line, line
    assert tree_digest(tmp_path) == before and not (tmp_path / "results" / "run").exists()
    assert not (tmp_path / "results" / ".substitutes").exists()
