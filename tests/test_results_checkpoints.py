"""scripts/results_checkpoints.py: the shipped-checkpoints table of RESULTS.md, from manifests."""

import importlib.util
import json
import os

import pytest

from conftest import REPO

spec = importlib.util.spec_from_file_location(
    "results_checkpoints", os.path.join(REPO, "scripts", "results_checkpoints.py"))
results_checkpoints = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_checkpoints)


def write_manifest(root, name, manifest):
    folder = root / "mnist" / name
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_a_rec_classifier_row_gives_its_projection_and_both_accuracies_with_intervals(tmp_path):
    write_manifest(tmp_path, "classifier_A_rec", {
        "kind": "classifier", "model": "A", "steps": 10000,
        "reconstructions": {"precision": "bfloat16", "projection": {
            "rec_iters": 100, "rec_rr": 10, "rec_lr": 10.0, "rec_prune_at": 0.25,
            "rec_keep": 2}},
        "metrics": {"test_accuracy": 0.99, "validation_rec_accuracy": 0.95,
                    "validation_rec_images": 1000}})
    text = results_checkpoints.section(str(tmp_path), test_images={"mnist": 10000})
    row = next(x for x in text.splitlines() if x.startswith("| `classifier_A_rec`"))
    assert "L=100, R=10, bfloat16, early stop at 0.25 keeping 2" in row
    assert "0.990 [0.988, 0.992] (n=10000)" in row and "0.950 [0.935, 0.962] (n=1000)" in row


def test_plain_and_adversarially_trained_classifiers_and_generators_are_told_apart(tmp_path):
    write_manifest(tmp_path, "classifier_B_adv0.3", {
        "kind": "classifier", "model": "B", "steps": 10, "adversarially_trained": True,
        "adv_train_eps": 0.3, "metrics": {"test_accuracy": 0.5}})
    write_manifest(tmp_path, "gan", {
        "kind": "generator", "iterations": 20000, "wall_clock_seconds": 7200,
        "environment": {"cpu": "AMD EPYC"},
        "metrics": {"validation_wasserstein": 0.95, "validation_images": 1000}})
    text = results_checkpoints.section(str(tmp_path), test_images={"mnist": 10})
    assert "| `classifier_B_adv0.3` | B | clean + FGSM eps 0.3 (adversarial training) |" in text
    assert "| `gan` | generator | 20000 generator iterations;" in text and "2.0 h on AMD" in text


def test_no_checkpoints_give_no_section(tmp_path):
    assert results_checkpoints.section(str(tmp_path)) == ""


def test_an_unreadable_manifest_stops_with_an_error_naming_it(tmp_path):
    write_manifest(tmp_path, "classifier_A", {"kind": "classifier", "model": "A"})
    broken = tmp_path / "mnist" / "classifier_B" / "manifest.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"kind": "classif')
    with pytest.raises(SystemExit) as exc:
        results_checkpoints.section(str(tmp_path), test_images={"mnist": 10})
    assert str(broken) in str(exc.value) and str(exc.value).startswith("error:")


def test_cpu_name_adds_family_and_model_so_a_bare_amd_epyc_is_told_apart(tmp_path):
    from defense_gan.checkpoints import cpu_name
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\ncpu family\t: 26\nmodel\t\t: 2\n"
                    "model name\t: AMD EPYC\n\nprocessor\t: 1\nmodel name\t: other\n")
    assert cpu_name(str(info)) == "AMD EPYC (family 26, model 2)"
