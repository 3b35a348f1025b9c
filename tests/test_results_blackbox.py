"""scripts/results_blackbox.py: the Table 1/2 and Table 3 Markdown from blackbox results.json."""

import json
import os
import sys

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "scripts"))
import results_blackbox  # noqa: E402


def fake_run(root, folder, model, sub, defense, adv, n, dataset="mnist", labels="defended",
             eps=0.3, L=200, variant=None, adv_eps=None, clean=0.99, sub_acc=0.8,
             oracle_precision="bfloat16", augmentation=None, **metrics):
    settings = {"model": model, "defense": defense, "rec_iters": L, "rec_rr": 10,
                "attack_settings": {"eps": eps}, "substitute": {"model": sub},
                "oracle": {"labels": labels, "labelling_defense": "defense_gan",
                           "rec_iters": 100, "rec_rr": 10, "precision": oracle_precision,
                           "rec_prune_at": 0.25, "rec_keep": 2}}
    if variant:
        settings["classifier_variant"] = variant
    if adv_eps:
        settings["adv_train_eps"] = adv_eps
    if augmentation:
        settings["substitute"]["augmentation"] = f"{augmentation}: as the release"
    result = {"settings": settings, "written": "2026-12-02T00:00:00+00:00",
              "metrics": {"num_images": n, "adversarial_accuracy": adv,
                          "clean_accuracy": clean, "substitute_accuracy": sub_acc, **metrics}}
    path = os.path.join(root, "results", dataset, "blackbox", folder)
    os.makedirs(path)
    with open(os.path.join(path, "results.json"), "w") as f:
        json.dump(result, f)


def row(text, name):
    return next(line for line in text.splitlines() if line.startswith(f"| {name} |"))


def test_each_column_takes_its_defense_and_classifier_variant_beside_the_paper(tmp_path):
    root = str(tmp_path)
    fake_run(root, "none", "A", "B", "none", 0.70, 1850, clean=0.995)
    fake_run(root, "orig", "A", "B", "defense_gan", 0.90, 500)
    fake_run(root, "rec", "A", "B", "defense_gan", 0.92, 500, variant="rec")
    fake_run(root, "magnet", "A", "B", "magnet", 0.60, 1850)
    fake_run(root, "adv03", "A", "B", "adv_tr", 0.95, 1850, adv_eps=0.3)
    fake_run(root, "adv015", "A", "B", "adv_tr", 0.50, 1850)
    cells = [c.strip() for c in row(results_blackbox.section(root), "A/B").split("|")[2:-1]]
    assert cells[0] == "0.800 [0.781, 0.818] n=1850"  # the substitute's accuracy
    assert cells[1].startswith("0.995 [") and cells[1].endswith("n=1850 (0.997)")
    expected = [("0.700", "0.634", "none"), ("0.920", "0.931", "rec"), ("0.900", "0.928", "orig"),
                ("0.600", "0.694", "magnet"), ("0.950", "0.965", "adv03"),
                ("0.500", "0.622", "adv015")]
    for cell, (ours, paper, folder) in zip(cells[2:], expected):
        assert cell.startswith(ours + " [") and f"({paper})" in cell, cell
        assert f"results/mnist/blackbox/{folder}/results.json" in cell


def test_a_magnet_cell_also_gives_the_accuracy_on_the_reformed_images_alone(tmp_path):
    root = str(tmp_path)
    fake_run(root, "magnet", "A", "B", "magnet", 1.0, 1850, reformed_adversarial_accuracy=0.859)
    cell = row(results_blackbox.section(root), "A/B").split("|")[7]
    assert cell.strip().startswith("1.000 [") and "/ reformed only 0.859 [" in cell
    assert "(0.694)" in cell


def test_a_defense_gan_cell_is_explained_from_its_own_results_json(tmp_path):
    root = str(tmp_path)
    fake_run(root, "orig", "A", "B", "defense_gan", 0.546, 500, defended_clean_accuracy=0.994,
             undefended_adversarial_accuracy=0.42, mean_mse_adv=0.0364, mean_mse_clean=0.0031)
    note = next(line for line in results_blackbox.section(root).splitlines()
                if line.startswith("- A/B Defense-GAN-Orig"))
    assert "attacked 0.546 [" in note and "clean reconstructions 0.994 [" in note
    assert "leaves 0.420 [" in note and "0.0364 attacked, 0.0031 clean (11.7x)" in note


def test_empty_cells_show_the_paper_and_runs_outside_the_protocol_are_listed_apart(tmp_path):
    root = str(tmp_path)
    fake_run(root, "target", "A", "B", "none", 0.48, 1850, labels="target")
    fake_run(root, "L100", "A", "B", "defense_gan", 0.88, 500, L=100)
    text = results_blackbox.section(root)
    assert row(text, "A/B").count("·") == 8  # substitute accuracy and all seven columns
    other = text.split("Other black-box runs")[1]
    assert "labels: target" in other and "0.480 [" in other


def test_a_run_whose_substitute_had_another_oracle_projection_is_listed_apart(tmp_path):
    root = str(tmp_path)
    fake_run(root, "fp32_oracle", "A", "B", "none", 0.44, 1850, oracle_precision="float32")
    fake_run(root, "bf16_oracle", "A", "B", "none", 0.47, 500)
    text = results_blackbox.section(root)
    assert "0.470 [" in row(text, "A/B") and "0.440 [" not in row(text, "A/B")
    other = text.split("Other black-box runs")[1]
    assert "0.440 [" in other and "L=100, R=10, float32" in other


def test_table3_fills_each_eps_from_the_rec_runs_of_f_against_e_at_l400(tmp_path):
    root = str(tmp_path)
    fake_run(root, "t3_010", "F", "E", "defense_gan", 0.98, 500, L=400, eps=0.1, variant="rec")
    fake_run(root, "t3_030_orig", "F", "E", "defense_gan", 0.10, 500, L=400, eps=0.3)
    text = results_blackbox.section(root).split("**Table 3**")[1]
    assert row(text, "0.10").startswith("| 0.10 | 0.980 [") and "0.9864±0.0011" in text
    assert "| 0.30 | · | 0.9307±0.0034 | not run |" in text  # the Orig run is not a Rec cell


def test_fashion_mnist_uses_table_2_and_its_own_folder(tmp_path):
    root = str(tmp_path)
    fake_run(root, "none", "A", "B", "none", 0.40, 1850, dataset="fashion_mnist")
    text = results_blackbox.section(root, "fashion_mnist")
    assert "Table 2 layout" in text
    assert "0.400 [" in row(text, "A/B") and "(0.513)" in row(text, "A/B")
    assert "0.400 [" not in results_blackbox.section(root, "mnist")


def test_the_table_script_labels_substitutes_with_the_tables_oracle_precision():
    with open(os.path.join(REPO, "scripts", "run_blackbox_tables.sh")) as f:
        script = f.read()
    assert f"--oracle_precision={results_blackbox.TABLE_ORACLE['precision']}" in script


def test_a_run_with_the_releases_augmentation_stays_out_of_the_table_beside_its_cell(tmp_path):
    root = str(tmp_path)
    fake_run(root, "orig", "A", "B", "defense_gan", 0.55, 500, sub_acc=0.83)
    fake_run(root, "orig_aug", "A", "B", "defense_gan", 0.85, 200, sub_acc=0.6,
             augmentation="cleverhans2017")
    text = results_blackbox.section(root)
    assert row(text, "A/B").split("|")[6].strip().startswith("0.550 [")  # the fixed run
    line = next(x for x in text.splitlines() if x.startswith("- A/B Defense-GAN-Orig:"))
    assert line.startswith("- A/B Defense-GAN-Orig: 0.850 [")
    assert "(cleverhans2017) (substitute 0.600" in line and "against 0.550 [" in line
    assert line.endswith("; paper 0.928.")
    assert "Other black-box runs" not in text


def test_a_run_labelled_through_an_untrained_generator_stays_out_beside_its_cell(tmp_path):
    root = str(tmp_path)
    fake_run(root, "none", "A", "B", "none", 0.40, 1850, sub_acc=0.8)
    fake_run(root, "none_untrained", "A", "B", "none", 0.70, 1850, sub_acc=0.5,
             labels="release_untrained", augmentation="cleverhans2017")
    text = results_blackbox.section(root)
    assert row(text, "A/B").split("|")[4].strip().startswith("0.400 [")  # the table's run
    line = next(x for x in text.splitlines() if x.startswith("- A/B No defense:"))
    assert line.startswith("- A/B No defense: 0.700 [")
    assert "(cleverhans2017) and labels through an untrained generator" in line
    assert "against 0.400 [" in line and line.endswith("; paper 0.634.")
    assert "Other black-box runs" not in text
