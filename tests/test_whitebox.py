"""`main.py --mode=whitebox` (and the train_classifier export it consumes) from the command line:
what a run writes, resuming, and one-line refusals of bad input. Every run uses flags/smoke.cfg
(8 test images in 2 batches of 4, L=3, R=2), the session's smoke GAN and smoke classifier,
and an explicit --results_dir in a temporary folder."""

import hashlib
import json
import shutil

import pytest

from conftest import SMOKE_CLASSIFIER_MODEL, SMOKE_FLAGFILE, error_line, run_main, run_main_here
from defense_gan import checkpoints, results

NUM_TESTS, EVAL_BATCH = 8, 4  # flags/smoke.cfg
NUM_BATCHES = NUM_TESTS // EVAL_BATCH
FGSM_EPS = 0.3  # the flag's default; smoke.cfg does not set it
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def whitebox(results_dir, gan_dir, classifier_dir, *extra, runner=run_main):
    """Run whitebox with smoke flags; `extra` flags come last (win)."""
    return runner(f"--flagfile={SMOKE_FLAGFILE}", "--mode=whitebox",
                    f"--model={SMOKE_CLASSIFIER_MODEL}", f"--gan_dir={gan_dir}",
                    f"--classifier_dir={classifier_dir}", f"--results_dir={results_dir}",
                    "--attack=fgsm", *extra)


def read_results(results_dir) -> dict:
    return json.loads((results_dir / "results.json").read_text())


def progress_lines(stdout):
    return [line for line in stdout.splitlines() if f"/{NUM_TESTS} images" in line]


@pytest.fixture(scope="module")
def none_run(tmp_path_factory, smoke_run, smoke_classifier):
    """(results_dir, stdout) of FGSM against the undefended classifier."""
    results_dir = tmp_path_factory.mktemp("whitebox_none") / "run"
    rc, out, err = whitebox(results_dir, smoke_run.train_dir, smoke_classifier.train_dir,
                            "--defense=none")
    assert rc == 0, f"whitebox --defense=none failed ({rc}):\n{out}\n{err}"
    return results_dir, out


BPDA_FLAGS = ("--defense=defense_gan", "--gradient=bpda")


@pytest.fixture(scope="module")
def bpda_run(tmp_path_factory, smoke_run, smoke_classifier):
    """(results_dir, stdout) of FGSM through Defense-GAN with the BPDA gradient."""
    results_dir = tmp_path_factory.mktemp("whitebox_bpda") / "run"
    rc, out, err = whitebox(results_dir, smoke_run.train_dir, smoke_classifier.train_dir,
                            *BPDA_FLAGS)
    assert rc == 0, f"whitebox --defense=defense_gan failed ({rc}):\n{out}\n{err}"
    return results_dir, out


# --- what a run writes -------------------------------------------------------------------------

def test_fgsm_without_defense_writes_settings_metrics_command_and_environment(none_run):
    results_dir, _ = none_run
    result = read_results(results_dir)
    settings, metrics = result["settings"], result["metrics"]
    assert (settings["model"], settings["attack"], settings["defense"]) == (
        SMOKE_CLASSIFIER_MODEL, "fgsm", "none")
    assert metrics["num_images"] == NUM_TESTS
    for key in ("clean_accuracy", "adversarial_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["mean_linf"] == pytest.approx(FGSM_EPS, abs=1e-5)  # FGSM spent its budget
    assert metrics["mean_l2"] > 0
    assert result["command"].startswith("python main.py ")
    assert "--mode=whitebox" in result["command"] and "--defense=none" in result["command"]
    assert {"tensorflow", "keras", "python"} <= set(result["environment"])


def test_results_record_the_sha256_of_the_classifier_checkpoint_files(none_run,
                                                                        smoke_classifier):
    export = smoke_classifier.train_dir / "export"
    recorded = read_results(none_run[0])["settings"]["checkpoints"]["classifier"]
    assert recorded["folder"] == str(export)
    assert recorded["sha256"] == {
        name: hashlib.sha256((export / name).read_bytes()).hexdigest()
        for name in json.loads((export / checkpoints.MANIFEST).read_text())["files"]}
    assert recorded["sha256"]  # the weights files, not an empty mapping


def test_a_run_writes_its_row_to_index_md_beside_its_results_dir(none_run):
    results_dir, _ = none_run
    table = (results_dir.parent / "index.md").read_text()
    rows = [line for line in table.splitlines() if line.endswith(f"| {results_dir.name} |")]
    assert table.startswith("| model | attack | defense |")
    assert len(rows) == 1 and rows[0].startswith(f"| {SMOKE_CLASSIFIER_MODEL} | fgsm | none |")


def test_index_md_keeps_one_row_per_run_folder_when_runs_are_rewritten(none_run, tmp_path):
    for name in ("first", "second"):
        shutil.copytree(none_run[0], tmp_path / name)
    results.rebuild_index(str(tmp_path))
    results.rebuild_index(str(tmp_path))  # e.g. a finished run rerun: its row is replaced
    rows = (tmp_path / "index.md").read_text().splitlines()[2:]
    assert [row.rsplit("|", 2)[1].strip() for row in rows] == ["first", "second"]


def test_index_md_skips_an_unreadable_results_json_and_says_so(none_run, tmp_path, capsys):
    shutil.copytree(none_run[0], tmp_path / "good")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{")
    results.rebuild_index(str(tmp_path))
    rows = (tmp_path / "index.md").read_text().splitlines()[2:]
    assert len(rows) == 1 and rows[0].endswith("| good |")
    assert "broken" in capsys.readouterr().out


def test_a_run_writes_an_examples_png(none_run):
    assert (none_run[0] / "examples.png").read_bytes()[:8] == PNG_MAGIC


def test_defense_gan_with_bpda_writes_projection_speed_mse_and_defended_clean_accuracy(
        bpda_run):
    result = read_results(bpda_run[0])
    metrics = result["metrics"]
    assert result["images_per_second"] > 0
    assert result["gradient_mode"] == "bpda"
    assert 0 < metrics["mean_mse_clean"] < 1 and 0 < metrics["mean_mse_adv"] < 1
    assert 0.0 <= metrics["defended_clean_accuracy"] <= 1.0
    assert metrics["mean_linf"] == pytest.approx(FGSM_EPS, abs=1e-5)  # BPDA gradient non-zero
    assert result["settings"]["checkpoints"]["generator"]["sha256"]


def test_only_iterative_attacks_through_bpda_report_accuracy_under_fresh_projection_seeds(
        bpda_run, smoke_run, smoke_classifier, tmp_path):
    assert read_results(bpda_run[0])["metrics"]["adversarial_accuracy_fresh_seed"] is None
    rc, out, err = whitebox(tmp_path / "pgd", smoke_run.train_dir, smoke_classifier.train_dir,
                            *BPDA_FLAGS, "--attack=pgd")
    assert rc == 0, err
    result = read_results(tmp_path / "pgd")
    assert 0.0 <= result["metrics"]["adversarial_accuracy_fresh_seed"] <= 1.0
    assert 0 < result["metrics"]["mean_mse_adv_fresh_seed"] < 1
    assert result["settings"]["fresh_seed_check"] is True
    # clean + attacked + fresh projections of each batch, plus the attack's own steps
    assert result["timing"]["projected_images"] >= 3 * NUM_TESTS


def rerun_copy(bpda_run, smoke_run, smoke_classifier, tmp_path, drop_results=False,
               moved=False):
    """Copy the finished BPDA run, optionally without its results.json (as if killed after its
    last batch), and rerun the same command on the copy: (results_dir, stdout). moved: the
    checkpoints are read from copies in other folders (a clone of the repository elsewhere)."""
    results_dir = tmp_path / bpda_run[0].name
    shutil.copytree(bpda_run[0], results_dir)
    if drop_results:
        (results_dir / "results.json").unlink()
    gan_dir, classifier_dir = smoke_run.train_dir, smoke_classifier.train_dir
    if moved:
        gan_dir, classifier_dir = tmp_path / "clone" / "gan", tmp_path / "clone" / "classifier"
        shutil.copytree(smoke_run.train_dir, gan_dir)
        shutil.copytree(smoke_classifier.train_dir, classifier_dir)
    rc, out, err = whitebox(results_dir, gan_dir, classifier_dir, *BPDA_FLAGS)
    assert rc == 0, err
    return results_dir, out


def test_rerunning_a_finished_run_computes_nothing_and_keeps_its_results_json(
        bpda_run, smoke_run, smoke_classifier, tmp_path):
    assert len(progress_lines(bpda_run[1])) == NUM_BATCHES  # the pattern matches fresh batches
    results_dir, out = rerun_copy(bpda_run, smoke_run, smoke_classifier, tmp_path)
    assert progress_lines(out) == []
    assert (results_dir / "results.json").read_bytes() == \
        (bpda_run[0] / "results.json").read_bytes()


def test_a_finished_run_read_with_checkpoints_in_other_folders_computes_nothing_and_keeps_it(
        bpda_run, smoke_run, smoke_classifier, tmp_path):
    results_dir, out = rerun_copy(bpda_run, smoke_run, smoke_classifier, tmp_path, moved=True)
    assert progress_lines(out) == []
    assert (results_dir / "results.json").read_bytes() == \
        (bpda_run[0] / "results.json").read_bytes()


def test_a_run_finished_from_saved_batches_reports_the_timing_of_all_of_them(
        bpda_run, smoke_run, smoke_classifier, tmp_path):
    first = read_results(bpda_run[0])
    results_dir, out = rerun_copy(bpda_run, smoke_run, smoke_classifier, tmp_path,
                                  drop_results=True)
    result = read_results(results_dir)
    assert progress_lines(out) == []
    assert result["timing"]["batches_resumed"] == NUM_BATCHES
    assert result["timing"]["projected_images"] == first["timing"]["projected_images"] > 0
    assert result["images_per_second"] == pytest.approx(first["images_per_second"])
    assert sum(result["timing"]["cpus"].values()) == NUM_BATCHES
    assert result["metrics"] == first["metrics"]


# --- refusals ----------------------------------------------------------------------------------

def _empty_gan_dir(tmp_path, gan_dir, classifier_dir):
    (tmp_path / "empty").mkdir()
    return ([f"--gan_dir={tmp_path / 'empty'}", "--defense=defense_gan"],
            ["--gan_dir", str(tmp_path / "empty")])


def _gan_export_as_classifier(tmp_path, gan_dir, classifier_dir):
    return [f"--classifier_dir={gan_dir}", "--defense=none"], ["--classifier_dir", "generator"]


def _export_of_another_model(tmp_path, gan_dir, classifier_dir):
    return ["--model=B", "--defense=none"], [
        "--classifier_dir", f"release_classifier_{SMOKE_CLASSIFIER_MODEL}"]


def _tampered_classifier_weights(tmp_path, gan_dir, classifier_dir):
    copy = tmp_path / "classifier"
    shutil.copytree(classifier_dir / "export", copy)
    data = next(copy.glob("weights.data-*"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    return [f"--classifier_dir={copy}", "--defense=none"], ["--classifier_dir", str(data),
                                                            "sha256"]


def _results_dir_is_a_file(tmp_path, gan_dir, classifier_dir):
    taken = tmp_path / "taken"
    taken.write_text("someone's notes")
    return [f"--results_dir={taken}", "--defense=none"], ["--results_dir", str(taken),
                                                          "not a directory"]


def _flag(flag, value):
    return lambda *_: ([f"--{flag}={value}"], [f"--{flag}"])


@pytest.mark.parametrize("case", [
    _empty_gan_dir, _gan_export_as_classifier, _export_of_another_model,
    _tampered_classifier_weights, _results_dir_is_a_file, _flag("rec_rr", 0),
    _flag("num_tests", 10001), _flag("fgsm_eps", 1.5)],
    ids=["empty_gan_dir", "gan_export_as_classifier_dir", "export_of_model_e_with_model_b",
         "tampered_classifier_weights", "results_dir_is_a_file", "rec_rr_0", "num_tests_10001",
         "fgsm_eps_1.5"])
def test_bad_input_exits_2_with_one_error_line_naming_it_and_writes_no_results(
        case, tmp_path, smoke_run, smoke_classifier):
    args, named = case(tmp_path, smoke_run.train_dir, smoke_classifier.train_dir)
    results_dir = tmp_path / "results" / "run"
    rc, out, err = whitebox(results_dir, smoke_run.train_dir, smoke_classifier.train_dir, *args,
                            runner=run_main_here)
    assert rc == 2, f"{out}\n{err}"
    line = error_line(err)
    for text in named:
        assert text in line, line
    assert not results_dir.exists()  # refused before anything was created


# --- train_classifier's export -----------------------------------------------------------------

def test_train_classifier_exports_a_manifest_with_validation_and_test_accuracy(
        smoke_classifier):
    manifest = json.loads((smoke_classifier.train_dir / "export" / "manifest.json").read_text())
    assert manifest["kind"] == "classifier" and manifest["model"] == SMOKE_CLASSIFIER_MODEL
    assert manifest["architecture"] == f"release_classifier_{SMOKE_CLASSIFIER_MODEL}"
    for key in ("validation_accuracy", "test_accuracy"):
        assert 0.0 <= manifest["metrics"][key] <= 1.0, key


def test_train_classifier_export_holds_the_trained_weights(smoke_classifier):
    """Loading the export reproduces the test accuracy measured when it was written."""
    from defense_gan import classifiers, data
    export = smoke_classifier.train_dir / "export"
    classifier, manifest = classifiers.load_classifier(str(export), "mnist",
                                                       SMOKE_CLASSIFIER_MODEL)
    splits = data.load("mnist")
    assert classifiers.accuracy(classifier, splits.x_test, splits.y_test) == (
        manifest["metrics"]["test_accuracy"])
