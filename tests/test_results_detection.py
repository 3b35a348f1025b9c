"""scripts/results_detection.py: the Detection / sweep / timing Markdown from results.json files."""

import json
import os
import sys

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "scripts"))
import results_detection  # noqa: E402


def fake_detect(root, folder, L, R, auc, clean_acc, adv_acc, n=500,
                label="black-box FGSM eps 0.3, substitute E", source=None):
    curve = {"label": label, "n_attacked": n, "n_clean": n, "folder": source,
             "auc": auc, "auc_ci95": [auc - 0.01, auc + 0.005], "detection_rate": 0.9,
             "detection_rate_ci95": [0.87, 0.92], "test_clean_fpr": 0.05,
             "test_clean_fpr_ci95": [0.03, 0.07],
             "accuracy": {"defended_clean_accuracy": clean_acc,
                          "defended_clean_accuracy_ci95": [clean_acc - 0.02, clean_acc + 0.01],
                          "adversarial_accuracy": adv_acc,
                          "adversarial_accuracy_ci95": [adv_acc - 0.03, adv_acc + 0.03]}}
    result = {"settings": {"rec_iters": L, "rec_rr": R}, "curves": [curve],
              "threshold": {"target_fpr": 0.05, "validation_n": n, "test_clean_fpr": 0.05,
                            "test_clean_fpr_ci95": [0.03, 0.07]}, "attacks_available": "x"}
    path = os.path.join(root, folder)
    os.makedirs(path)
    with open(os.path.join(path, "results.json"), "w") as f:
        json.dump(result, f)


def test_section_puts_each_sweep_cell_beside_the_paper(tmp_path):
    root = str(tmp_path)
    fake_detect(root, "results/mnist/sweeps/orig_L25_R10_n500", 25, 10, 0.961, 0.912, 0.734)
    fake_detect(root, "results/mnist/sweeps/orig_L100_R1_n500", 100, 1, 0.801, 0.655, 0.512)
    fake_detect(root, "results/mnist/detect/F_L200_R10_n200", 200, 10, 0.987, 0.97, 0.5,
                label="black-box FGSM eps 0.15, substitute E")
    text = results_detection.section(root)
    row25 = next(line for line in text.splitlines() if line.startswith("| 25 (n=500)"))
    assert "0.912 [0.892, 0.922]" in row25 and "0.961 [0.951, 0.966]" in row25
    assert "0.9273±0.0215 / 0.9141±0.0033" in row25 and "| 0.973 |" in row25
    row_r1 = next(line for line in text.splitlines() if line.startswith("| 1 (n=500)"))
    assert "0.655 [0.635, 0.665]" in row_r1 and "| 0.836 |" in row_r1
    assert "| 1600 | - |" in text  # not run: empty cells, the paper's values still shown
    detect_row = next(line for line in text.splitlines() if "0.987 [0.977, 0.992]" in line)
    assert "| 0.975 |" in detect_row  # the paper's Fig 4 legend, eps 0.15
    assert "Not measured yet" in text


def test_plot_writes_a_png_of_the_sweeps(tmp_path):
    root = str(tmp_path)
    assert results_detection.plot(root) is None
    fake_detect(root, "results/mnist/sweeps/orig_L25_R10_n500", 25, 10, 0.961, 0.912, 0.734)
    fake_detect(root, "results/mnist/sweeps/orig_L50_R10_n500", 50, 10, 0.975, 0.94, 0.81)
    path = results_detection.plot(root)
    with open(path, "rb") as f:
        assert f.read(4) == b"\x89PNG"


def test_the_roc_run_in_the_sweep_folder_is_a_detection_row_not_a_sweep_cell(tmp_path):
    root = str(tmp_path)
    fake_detect(root, "results/mnist/sweeps/roc_eps_L200_R10_n500", 200, 10, 0.944, 0.97, 0.6,
                label="black-box FGSM eps 0.1, substitute E")
    text = results_detection.section(root)
    roc_row = next(line for line in text.splitlines() if "0.944 [0.934, 0.949]" in line)
    assert "| 0.914 |" in roc_row and "roc_eps_L200_R10_n500" in roc_row
    row200 = next(line for line in text.splitlines() if line.startswith("| 200 |"))
    assert "0.944" not in row200  # the sweep's L=200 cell stays empty


def test_table_10_says_what_the_attack_does_without_the_defense_and_where_the_gap_comes_from(
        tmp_path):
    root = str(tmp_path)
    source = "results/mnist/blackbox/F_none_subE_eps0.3_n500"
    os.makedirs(os.path.join(root, source))
    with open(os.path.join(root, source, "results.json"), "w") as f:
        json.dump({"metrics": {"adversarial_accuracy": 0.71, "num_images": 500,
                               "adversarial_accuracy_ci95": [0.669, 0.748],
                               "clean_accuracy": 0.98, "substitute_accuracy": 0.754}}, f)
    # Paper, L=100, R=1, Orig: 0.6436 no attack, 0.5011 attacked.
    fake_detect(root, "results/mnist/sweeps/orig_L100_R1_n500", 100, 1, 0.98, 0.916, 0.802,
                source=source)
    fake_detect(root, "results/mnist/sweeps/orig_L100_R2_n500", 100, 2, 0.99, 0.96, 0.84,
                source=source)
    text = results_detection.section(root)
    assert "classifier F keeps 0.710 [0.669, 0.748] n=500" in text
    assert "The attack is weak against F" in text
    assert "R=1 our Orig accuracy is 0.916 with no attack and 0.802 attacked" in text
    assert "(+0.272 and +0.301): the attacked column's gap is the no-attack one's" in text


def test_table_10_makes_no_claim_about_the_gap_when_the_attacked_one_differs(tmp_path):
    root = str(tmp_path)
    fake_detect(root, "results/mnist/sweeps/orig_L100_R1_n500", 100, 1, 0.98, 0.916, 0.55)
    text = results_detection.section(root)
    assert "(+0.272 and +0.049)." in text and "gap is the no-attack" not in text


def test_fashion_mnist_cells_sit_beside_tables_9_and_11_and_its_own_eps_aucs(tmp_path):
    root = str(tmp_path)
    fake_detect(root, "results/fashion_mnist/sweeps/orig_L25_R10_n500", 25, 10, 0.9, 0.75, 0.4)
    fake_detect(root, "results/fashion_mnist/sweeps/roc_eps_L200_R10_n500", 200, 10, 0.8, 0.8,
                0.5, label="black-box FGSM eps 0.1, substitute E")
    fake_detect(root, "results/mnist/sweeps/orig_L50_R10_n500", 50, 10, 0.99, 0.9, 0.8)
    text = results_detection.section(root, "fashion_mnist")
    assert "## Tables 9 and 11: Fashion-MNIST" in text and "Table 13" not in text
    row25 = next(line for line in text.splitlines() if line.startswith("| 25 (n=500)"))
    assert "0.8037±0.0050 / 0.7595±0.0009" in row25 and "| 0.935 |" in row25
    assert "| 50 | - |" in text  # the MNIST run is not a Fashion-MNIST cell
    assert not any(line.startswith("| 20 ") for line in text.splitlines())  # no R=20 row
    roc_row = next(line for line in text.splitlines() if "eps 0.1," in line)
    assert "| 0.775 |" in roc_row  # Fashion-MNIST's legend at eps 0.1, not MNIST's 0.914


def test_the_roc_figure_of_the_eps_run_is_embedded_once_it_exists(tmp_path):
    root = str(tmp_path)
    folder = "results/mnist/sweeps/roc_eps_L200_R10_n500"
    fake_detect(root, folder, 200, 10, 0.944, 0.97, 0.6, label="black-box FGSM eps 0.1, substitute E")
    assert "roc.png" not in results_detection.section(root).split("## Tables")[0].split("`roc.png`")[1]
    with open(os.path.join(root, folder, "roc.png"), "wb") as f:
        f.write(b"\x89PNG")
    text = results_detection.section(root)
    assert f"![ROC per eps]({folder}/roc.png)" in text
    assert "L=200, R=10, 500 attacked" in text and "Figs 4-5 are at L=400" in text


def test_timing_table_names_the_cpu_and_puts_each_cell_beside_the_papers_titan_x(tmp_path):
    root = str(tmp_path)
    cells = [{"setting": "fp32", "L": 10, "R": 1, "seconds_per_image": 0.0123,
              "seconds_per_image_std": 0.0004},
             {"setting": "fp32", "L": 200, "R": 10, "seconds_per_image": 0.844,
              "seconds_per_image_std": 0.042}]
    result = {"command": "python benchmarks/reconstruction_time.py", "cells": cells,
              "machine": {"cpu": "AMD EPYC (family 25, model 17)", "cpu_count": 2,
                          "load_average_at_start": [0.1]},
              "load_average_at_end": [0.2], "shared_machine_note": "idle",
              "paper_note": "paper Table 13",
              "spec": {"batch": 50, "repeats": 2, "settings": ["fp32"], "L": [10, 200],
                       "R": [1, 10]}}
    os.makedirs(tmp_path / "benchmarks" / "results")
    with open(tmp_path / "benchmarks" / "results" / "reconstruction_time.json", "w") as f:
        json.dump(result, f)
    text = results_detection.timing_table(root)
    assert text.startswith("AMD EPYC (family 25, model 17) (2 CPUs; load average 0.1")
    lines = text.splitlines()
    assert "| 1 | 0.012±0.000 (0.043±0.027) | - |" in lines
    assert "| 10 | - | 0.844±0.042 (0.675±0.016) |" in lines


def test_timing_table_says_how_to_measure_when_nothing_is_measured(tmp_path):
    assert "python benchmarks/reconstruction_time.py" in \
        results_detection.timing_table(str(tmp_path))
