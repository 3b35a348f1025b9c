"""--mode=detect end to end on the smoke flags (shipped weights, L=3, R=2), with a fake
black-box run (adversarial.npz) and a fake white-box run (records) made here, and its bad
inputs."""

import json
import os

import numpy as np
import pytest
from conftest import REPO, SMOKE_FLAGFILE, error_line, run_main, run_main_here, tree_digest

from defense_gan import data, detection

SMOKE = (f"--flagfile={SMOKE_FLAGFILE}", "--mode=detect", "--model=F")
N = 8  # --num_tests in flags/smoke.cfg


def generator_sha256() -> dict:
    with open(os.path.join(REPO, "checkpoints", "mnist", "gan", "manifest.json")) as f:
        return json.load(f)["files"]


def fake_blackbox_run(folder, start=150, n=N, seed=0):
    """A black-box run folder as the contract has it: adversarial.npz of test[start:start+n]
    with +-0.3 sign noise (clipped), and a results.json without projection settings."""
    splits = data.load("mnist")
    x = splits.x_test[start:start + n].astype(np.float32) / 255.0
    noise = 0.3 * np.sign(np.random.default_rng(seed).normal(size=x.shape))
    os.makedirs(folder)
    np.savez(os.path.join(folder, "adversarial.npz"), x_adv=np.clip(x + noise, 0, 1),
             labels=splits.y_test[start:start + n], indices=np.arange(start, start + n))
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"settings": {"attack": "fgsm", "fgsm_eps": 0.3, "substitute": "E"},
                   "flags": {"mode": "blackbox"}}, f)
    return folder


def fake_whitebox_run(folder, rec_iters=3, generator=None, n=N):
    """A finished white-box run folder (results.json + records) of model F through BPDA."""
    splits = data.load("mnist")
    records = [{"index": i, "label": int(splits.y_test[i]), "pred_clean": 1, "pred_adv": 2,
                "pred_clean_defended": 1, "pred_adv_defended": 3, "mse_clean": 0.05,
                "mse_adv": 0.5 + i, "l2": 5.0, "linf": 0.3} for i in range(n)]
    os.makedirs(os.path.join(folder, "records"))
    with open(os.path.join(folder, "records", "batch_00000.json"), "w") as f:
        json.dump({"fingerprint": "x", "records": records}, f)
    settings = {"model": "F", "attack": "fgsm", "defense": "defense_gan", "gradient": "bpda",
                "rec_iters": rec_iters, "rec_rr": 2, "rec_lr": 10.0, "precision": "float32",
                "attack_settings": {"eps": 0.3},
                "checkpoints": {"generator": {"sha256": generator or generator_sha256()}}}
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"settings": settings, "command": "python main.py --mode=whitebox"}, f)
    return folder


@pytest.fixture(scope="module")
def detect_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("detect")
    blackbox = fake_blackbox_run(str(root / "bb_fgsm_eps0.3"))
    whitebox = fake_whitebox_run(str(root / "wb_fgsm"))
    out = root / "results" / "run"
    rc, stdout, stderr = run_main(*SMOKE, f"--adv_sources={blackbox},{whitebox}",
                                  f"--results_dir={out}", "--detect_bootstrap=50")
    assert rc == 0, stdout + stderr
    with open(out / "results.json") as f:
        return out, json.load(f), stdout


def test_detect_writes_one_curve_per_source_and_the_roc_png(detect_run):
    out, result, _ = detect_run
    assert [c["kind"] for c in result["curves"]] == ["projected", "records"]
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG"
    assert result["settings"]["rec_iters"] == 3 and result["settings"]["rec_rr"] == 2
    assert result["settings"]["checkpoints"]["generator"]["sha256"] == generator_sha256()
    assert result["attacks_available"] == (
        "attacks: black-box FGSM eps 0.3, substitute E; white-box FGSM eps 0.3 (BPDA)")


def test_detect_auc_and_detection_rate_match_its_records(detect_run):
    out, result, _ = detect_run
    threshold = result["threshold"]["value"]
    for curve in result["curves"]:
        with open(out / "records" / f"{curve['key']}.json") as f:
            records = json.load(f)["records"]
        clean = [r["mse_clean"] for r in records]
        attacked = [r["mse_adv"] for r in records]
        assert curve["auc"] == pytest.approx(detection.auc(clean, attacked))
        assert curve["auc_ci95"][0] <= curve["auc"] <= curve["auc_ci95"][1]
        assert curve["detected"] == sum(a > threshold for a in attacked)
        assert curve["n_attacked"] == curve["n_clean"] == N


def test_detect_reuses_matching_records_without_projecting(detect_run):
    out, result, _ = detect_run
    with open(out / "records" / "wb_fgsm.json") as f:
        records = json.load(f)["records"]
    assert [r["mse_adv"] for r in records] == [0.5 + i for i in range(N)]
    # mse_clean comes from this run's clean projection, not the fake 0.05 of the records.
    assert all(r["mse_clean"] != 0.05 for r in records)
    # The attacked MSEs of 0.5+ are all above any clean MSE: a perfect detector.
    assert result["curves"][1]["auc"] == 1.0


def test_detect_projects_blackbox_images_with_their_test_indices(detect_run):
    out, result, _ = detect_run
    with open(out / "records" / "bb_fgsm_eps0.3.json") as f:
        records = json.load(f)["records"]
    assert [r["index"] for r in records] == list(range(150, 150 + N))
    assert all(r["linf"] == pytest.approx(0.3, abs=1e-6) for r in records)
    # Sign noise of 0.3 is far off the generator's range: its projection error is larger.
    assert np.mean([r["mse_adv"] for r in records]) > np.mean([r["mse_clean"] for r in records])


def test_a_blackbox_runs_substitute_settings_give_its_model_in_the_label(tmp_path):
    from defense_gan.modes import detect
    settings = {"attack": "fgsm", "fgsm_eps": 0.3,
                "substitute": {"model": "B", "epochs": 10, "lambda": 0.1}}
    source = detect.Source(str(tmp_path), "projected",
                           {"settings": settings, "flags": {"mode": "blackbox"}})
    assert detect._label(source) == "black-box FGSM eps 0.3, substitute B"


def test_detect_threshold_is_chosen_on_validation(detect_run):
    _, result, _ = detect_run
    t = result["threshold"]
    assert t["validation_n"] == N and t["validation_flagged"] <= np.floor(0.05 * N)
    assert t["chosen_on"] == f"the first {N} validation images"


@pytest.mark.parametrize("flag,expected", [
    ("--detect_fpr=0", "--detect_fpr: must be in (0, 1)"),
    ("--detect_fpr=1.5", "--detect_fpr: must be in (0, 1)"),
    ("--detect_val=0", "--detect_val: the detection threshold is chosen on validation"),
    ("--adv_sources=", "--adv_sources: is an empty list"),
    ("--adv_sources=a,,b", "--adv_sources: has an empty entry"),
    ("--rec_iters_snapshots=", "--rec_iters_snapshots: is an empty list"),
    ("--rec_iters_snapshots=3", "--rec_iters_snapshots: every value must be in [1, --rec_iters=3)"),
    ("--rec_iters_snapshots=1,x", "--rec_iters_snapshots: 'x' is not an integer"),
    ("--rec_iters_snapshots=1 --rec_prune_at=0.5 --rec_keep=1",
     "--rec_iters_snapshots: an early-stopped projection's first steps"),
])
def test_detect_refuses_bad_flags_writing_nothing(tmp_path, flag, expected):
    before = tree_digest(tmp_path)
    rc, _, stderr = run_main_here(*SMOKE, *flag.split(), f"--results_dir={tmp_path / 'out'}")
    assert rc != 0 and expected in error_line(stderr)
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("kwargs,expected", [
    ({"rec_iters": 200}, "L (rec_iters)=200 (this run: 3)"),
    ({"generator": {"weights.index": "0" * 64}}, "another generator"),
])
def test_detect_refuses_records_of_another_projection(tmp_path, kwargs, expected):
    source = fake_whitebox_run(str(tmp_path / "other"), **kwargs)
    before = tree_digest(tmp_path)
    rc, _, stderr = run_main_here(*SMOKE, f"--adv_sources={source}",
                             f"--results_dir={tmp_path / 'out'}")
    line = error_line(stderr)
    assert rc != 0 and line.startswith("error: --adv_sources:") and expected in line
    assert tree_digest(tmp_path) == before


def test_detect_refuses_npz_whose_labels_are_not_the_test_set(tmp_path):
    source = fake_blackbox_run(str(tmp_path / "bb"))
    path = os.path.join(source, "adversarial.npz")
    with np.load(path) as f:
        arrays = dict(f)
    arrays["labels"] = (arrays["labels"] + 1) % 10
    np.savez(path, **arrays)
    before = tree_digest(tmp_path)
    rc, _, stderr = run_main_here(*SMOKE, f"--adv_sources={source}",
                             f"--results_dir={tmp_path / 'out'}")
    assert rc != 0 and "labels differ from the test set" in error_line(stderr)
    assert tree_digest(tmp_path) == before


def test_snapshots_fill_the_cache_of_each_smaller_L_with_what_a_run_there_computes(tmp_path):
    blackbox = fake_blackbox_run(str(tmp_path / "bb_fgsm_eps0.3"))
    common = (*SMOKE, f"--adv_sources={blackbox}", "--detect_bootstrap=20", "--nodetect_whitebox")
    rc, out, err = run_main(*common, "--rec_iters=3", "--rec_iters_snapshots=2",
                            f"--results_dir={tmp_path / 'sweep' / 'L3'}")
    assert rc == 0, out + err
    runs = {}
    for name, parent in (("cached", "sweep"), ("fresh", "alone")):
        folder = tmp_path / parent / "L2"
        rc, out, err = run_main(*common, "--rec_iters=2", f"--results_dir={folder}")
        assert rc == 0, out + err
        runs[name] = (json.loads((folder / "results.json").read_text()),
                      json.loads((folder / "records" / "bb_fgsm_eps0.3.json").read_text()))
    cached, fresh = runs["cached"], runs["fresh"]
    assert cached[0]["timing"]["clean_test_projected_images"] == 0
    assert set(cached[0]["timing"]["images_per_second"].values()) == {None}
    assert fresh[0]["timing"]["clean_test_projected_images"] > 0
    for a, b in zip(cached[1]["records"], fresh[1]["records"]):
        assert a["mse_adv"] == pytest.approx(b["mse_adv"], rel=1e-5)
        assert a["mse_clean"] == pytest.approx(b["mse_clean"], rel=1e-5)
    assert cached[0]["threshold"]["value"] == pytest.approx(fresh[0]["threshold"]["value"],
                                                            rel=1e-5)
