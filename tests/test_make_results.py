"""scripts/make_results.py: RESULTS.md only shows Defense-GAN runs of the shipped generator."""

import importlib.util
import os

from conftest import REPO

spec = importlib.util.spec_from_file_location(
    "make_results", os.path.join(REPO, "scripts", "make_results.py"))
make_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_results)

SHIPPED = {"weights.data-00000-of-00001": "aa" * 32}
OLD = {"weights.data-00000-of-00001": "bb" * 32}


def run(defense, generator_files=None, accuracy=0.5, path="run"):
    checkpoints = {"classifier": {"folder": "checkpoints/mnist/classifier_A", "sha256": {}}}
    if generator_files is not None:
        checkpoints["generator"] = {"folder": "checkpoints/mnist/gan", "iterations": 7,
                                    "sha256": generator_files}
    metrics = {"num_images": 10, "clean_accuracy": 1.0, "adversarial_accuracy": accuracy,
               "defended_clean_accuracy": 0.9 if generator_files else None, "mean_l2": 1.0}
    return {"settings": {"model": "A", "attack": "fgsm", "defense": defense,
                         "gradient": "classifier", "checkpoints": checkpoints},
            "metrics": metrics, "command": f"python main.py --defense={defense}",
            "path": path, "written": "2026-11-30T00:00:00+00:00"}


def test_defense_gan_runs_of_another_generator_are_left_out_and_undefended_runs_kept():
    runs = [run("none"), run("defense_gan", SHIPPED), run("defense_gan", OLD, path="old")]
    current, stale = make_results.split_by_generator(runs, SHIPPED)
    assert [r["settings"]["defense"] for r in current] == ["none", "defense_gan"]
    assert [r["path"] for r in stale] == ["old"]


def test_results_md_lists_the_left_out_runs_and_shows_only_the_shipped_generators_number():
    text = make_results.build([run("defense_gan", SHIPPED, accuracy=0.123)],
                              [run("defense_gan", OLD, accuracy=0.987, path="old_run")])
    assert "0.123" in text and "0.987" not in text
    assert "- `old_run` (generator at 7 iterations, 10 images)" in text


def test_a_cw_bpda_run_gets_a_note_with_its_sample_size():
    cw = run("defense_gan", SHIPPED)
    cw["settings"].update(attack="cw", gradient="bpda")
    assert "CW through BPDA" not in make_results.build([run("defense_gan", SHIPPED)])
    assert "fewer images (A: 10)" in make_results.build([cw])


def test_the_reading_section_quotes_the_runs_numbers_beside_the_papers():
    dg = run("defense_gan", SHIPPED, accuracy=0.456)
    dg["metrics"].update(mean_mse_clean=0.0031, mean_mse_adv=0.0372)
    text = make_results.build([run("none", accuracy=0.111), dg])
    line = next(x for x in text.splitlines() if x.startswith("- **FGSM** (models A)"))
    assert "clean images 0.900 (the paper, same models: Defense-GAN-Rec 0.988 (A))" in line
    assert "gradient 0.456 (models A; without the defense 0.111)" in line
    assert "clean 0.0031, attacked 0.0372" in line


def test_orig_and_rec_clean_reconstructions_sit_beside_the_papers_orig_and_rec_values():
    f_run = run("defense_gan", SHIPPED)
    f_run["settings"]["model"] = "F"
    a_rec = run("defense_gan", SHIPPED, path="rec")
    a_rec["settings"]["classifier_variant"] = "rec"
    a_rec["metrics"]["defended_clean_accuracy"] = 0.8
    rows = [x for x in make_results.build([run("defense_gan", SHIPPED), a_rec, f_run]
                                          ).splitlines()
            if x.startswith("| A | 10 |") or x.startswith("| F | 10 |")]
    # A: Table 4 has Rec only; F: Table 8 has both (Orig 0.971, Rec 0.986).
    assert "| 0.900 [0.596, 0.982] n=10 | 0.800 [0.490, 0.943] n=10 (0.988) |" in rows[0]
    assert "| 0.900 [0.596, 0.982] n=10 (0.971) | · (0.986) |" in rows[1]


def test_one_rec_run_fills_the_dg_rec_clean_column_of_every_attacks_table():
    a_rec = run("defense_gan", SHIPPED, path="rec")
    a_rec["settings"]["classifier_variant"] = "rec"
    a_rec["metrics"]["defended_clean_accuracy"] = 0.8
    cw = run("defense_gan", SHIPPED, path="cw")
    cw["settings"]["attack"] = "cw"
    text = make_results.build([run("defense_gan", SHIPPED), a_rec, cw])
    rows = [x for x in text.splitlines() if x.startswith("| A | 10 |")]
    assert len(rows) == 2  # the FGSM and the CW table, each beside its own paper value
    assert "| 0.800 [0.490, 0.943] n=10 (0.988) |" in rows[0]
    assert "| 0.800 [0.490, 0.943] n=10 (0.989) |" in rows[1]


def test_magnet_and_both_adversarial_training_eps_fill_their_own_columns():
    mag = run("magnet", path="magnet", accuracy=1.0)
    mag["settings"]["gradient"] = "full"
    mag["metrics"]["reformed_adversarial_accuracy"] = 0.4
    adv3 = run("adv_tr", path="adv3", accuracy=0.7)
    adv3["settings"]["adv_train_eps"] = 0.3
    adv = run("adv_tr", path="adv", accuracy=0.6)
    row = next(x for x in make_results.build([mag, adv3, adv]).splitlines()
               if x.startswith("| A | 10 |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[8].startswith("1.000 [") and "reformed only 0.400 [" in cells[8]
    assert cells[8].endswith("(0.191)")
    assert cells[9].startswith("0.700 [") and cells[9].endswith("(0.651)")
    assert cells[10].startswith("0.600 [") and "(" not in cells[10]  # no paper value at 0.15


def test_a_fashion_mnist_table_uses_the_papers_fashion_mnist_values():
    row = next(x for x in make_results.build([run("none", accuracy=0.3)], dataset="fashion_mnist"
                                             ).splitlines() if x.startswith("| A | 10 |"))
    assert "(0.934)" in row and "(0.102)" in row


def test_a_cw_bpda_cell_shows_the_known_seed_and_the_fresh_seed_accuracy():
    cw = run("defense_gan", SHIPPED, accuracy=0.0)
    cw["settings"].update(attack="cw", gradient="bpda")
    cw["metrics"]["adversarial_accuracy_fresh_seed"] = 0.42
    row = next(x for x in make_results.build([cw]).splitlines() if x.startswith("| A | 10 |"))
    assert "| 0.000 [0.000, 0.278] n=10 / 0.420 [0.168, 0.687] n=10 fresh |" in row
    reading = next(x for x in make_results.build([cw]).splitlines() if x.startswith("- **CW"))
    assert "through BPDA 0.000 (models A; the same adversarial images projected with " \
        "restarts the attack never saw 0.420)" in reading
    plain = run("defense_gan", SHIPPED, accuracy=0.2)
    plain["settings"]["gradient"] = "bpda"
    row = next(x for x in make_results.build([plain]).splitlines() if x.startswith("| A | 10 |"))
    assert "| 0.200 [0.057, 0.510] n=10 |" in row and "fresh" not in row


def test_examples_embed_the_bpda_grid_of_model_a_when_its_png_exists(tmp_path):
    with_png, without_png = tmp_path / "bpda_run", tmp_path / "classifier_run"
    with_png.mkdir()
    without_png.mkdir()
    (with_png / "examples.png").write_bytes(b"png")
    bpda = run("defense_gan", SHIPPED, path=str(with_png))
    bpda["settings"]["gradient"] = "bpda"
    text = make_results.build([run("defense_gan", SHIPPED, path=str(without_png)), bpda])
    assert f"![fgsm examples, model A]({with_png}/examples.png)" in text
    assert "classifier_run/examples.png" not in text
    assert "## Examples" not in make_results.build([run("defense_gan", SHIPPED,
                                                        path=str(without_png))])


def test_every_accuracy_cell_shows_its_wilson_interval_and_sample_size():
    from defense_gan import stats
    r = run("none", accuracy=0.3)
    low, high = stats.wilson_interval(3, 10)
    row = next(x for x in make_results.build([r]).splitlines() if x.startswith("| A | 10 |"))
    assert f"| 0.300 [{low:.3f}, {high:.3f}] n=10 (0.217) |" in row


def adaptive_run(attack="pgd", accuracy=0.1, fresh=0.2, **settings):
    r = run("defense_gan", SHIPPED, accuracy=accuracy, path=f"{attack}_run")
    r["settings"].update(attack=attack, gradient="bpda", rec_iters=200, rec_rr=10,
                         eot_samples=1, attacker_knowledge={"attack_projection": {
                             "rec_iters": 50, "rec_rr": 2, "precision": "bfloat16"}},
                         attack_settings={"norm": "linf", "eps": 0.3, "nb_iter": 40,
                                          "eps_iter": 0.01875, "restarts": 1,
                                          "iterations": 500, "c": 1.0}, **settings)
    r["metrics"].update(adversarial_accuracy_fresh_seed=fresh, changed_fraction=0.6,
                        mean_l2_changed=2.0, mean_l2_sq_changed=4.0)
    return r


def test_adaptive_runs_leave_the_table_4_layout_and_sit_beside_the_fgsm_bpda_cell():
    fgsm = run("defense_gan", SHIPPED, accuracy=0.51)
    fgsm["settings"]["gradient"] = "bpda"
    text = make_results.build([fgsm, adaptive_run()])
    section = text[text.index("## Adaptive evaluation"):]
    row = next(x for x in section.splitlines() if x.startswith("| A | pgd |"))
    assert "bpda + EOT 1 (attack projects at L=50, R=2, bf16)" in row
    assert "| 0.100 [0.018, 0.404] n=10 | 0.200 [0.057, 0.510] n=10 |" in row
    assert "| 0.510 [0.237, 0.763] n=10 |" in row  # the FGSM-through-BPDA cell beside it
    assert "## PGD" not in text and "pgd_run" not in text[:text.index("## Adaptive")]


def test_adaptive_rows_of_adversarially_trained_models_name_their_training_eps():
    default = adaptive_run(defense="adv_tr")  # run settings name only a non-default eps
    other = adaptive_run(defense="adv_tr", adv_train_eps=0.3)
    other["path"] = "adv0.3"
    text = make_results.build([default, other])
    assert "| adv_tr 0.15 |" in text and "| adv_tr 0.3 |" in text


def test_the_latent_attack_is_shown_beside_athalyes_number_in_three_normalisations():
    text = make_results.build([adaptive_run("latent", accuracy=0.4, fresh=0.45)])
    assert "accuracy 55%, i.e. 45% success" in text
    row = next(x for x in text.splitlines() if x.startswith("| A | 10 | 0.600 |"))
    assert "| 0.550 [" in row and f"| 2.00 | {4 / 784:.4f} | {(4 / 784) ** 0.5:.4f} |" in row


def test_sweeps_become_a_curve_png_and_a_table(tmp_path):
    points = [{"eps": e, "adversarial_accuracy": a, "num_images": 10,
               "adversarial_accuracy_ci95": [max(0, a - 0.1), min(1, a + 0.1)]}
              for e, a in ((0.1, 0.8), (0.3, 0.2))]
    sweep = {"model": "A", "attack": "pgd", "norm": "linf", "label": "no defense",
             "points": points}
    text = make_results.build([run("none")], (), [sweep], str(tmp_path))
    png = tmp_path / "curves_A_pgd_linf.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| no defense | 0.800 n=10 | 0.200 n=10 |" in text


def test_classifiers_reason_names_the_models_below_and_above_the_paper_beyond_the_interval():
    # Fashion-MNIST paper No-attack: A 0.934, B 0.747, C 0.933, D 0.892.
    text = make_results.classifiers_bullet({"A": 0.912, "B": 0.788, "C": 0.933}, "fashion_mnist")
    assert "checkpoints/fashion_mnist/classifier_*" in text
    assert "A 0.912 (0.934), B 0.788 (0.747), C 0.933 (0.933)." in text
    assert "beyond the 95% interval: A." in text and "Above it beyond the interval: B." in text


def test_classifiers_reason_is_built_from_the_shipped_manifests_of_its_dataset():
    text = make_results.whitebox_text("fashion_mnist",
                                      os.path.join(REPO, "results", "fashion_mnist", "whitebox"),
                                      os.path.join(REPO, "checkpoints", "fashion_mnist", "gan"))
    bullet = next(x for x in text.splitlines() if x.startswith("- **Classifiers**"))
    assert "checkpoints/fashion_mnist/" in bullet and " B 0.788 (0.747)" in bullet


def test_the_labels_note_counts_images_the_attack_pushed_back_to_their_true_class(
        tmp_path, monkeypatch):
    import json
    monkeypatch.setattr(make_results, "REPO", str(tmp_path))
    (tmp_path / "dg" / "records").mkdir(parents=True)
    records = [{"label": 1, "pred_clean_defended": 2, "pred_adv_defended": 1},   # restored
               {"label": 1, "pred_clean_defended": 2, "pred_adv_defended": 3},
               {"label": 1, "pred_clean_defended": 1, "pred_adv_defended": 1},
               {"label": 1, "pred_clean_defended": 1, "pred_adv_defended": 0}]
    (tmp_path / "dg" / "records" / "batch_00000.json").write_text(
        json.dumps({"records": records}))
    dg = run("defense_gan", SHIPPED, path="dg")
    dg["settings"]["gradient"] = "bpda"
    assert "in points of accuracy: A 25.0 (" in make_results.build([dg])
    dg["settings"]["attack_settings"] = {"labels": "true labels"}
    assert "Labels of the attacks" not in make_results.build([dg])


def test_adaptive_rows_say_which_labels_the_attack_moved_away_from():
    old, new = adaptive_run(), adaptive_run()
    new["settings"]["attack_settings"]["labels"] = "true labels"
    new["path"] = "pgd_true"
    text = make_results.build([old, new])
    rows = [x for x in text[text.index("## Adaptive evaluation"):].splitlines()
            if x.startswith("| A | pgd |")]
    assert [("| predicted |" in x, "| true |" in x) for x in rows] == [(True, False),
                                                                       (False, True)]
