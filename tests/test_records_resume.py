"""Per-batch records are found again by a clone of the repository at another path: their
fingerprint leaves out the checkout's folders (the weights are named by sha256), and records
written before that (fingerprints of absolute folders) are accepted when their own settings
match up to those folders."""

import json

from defense_gan import evaluation
from defense_gan.rec_cache import fingerprint, portable_fingerprint

COUNT = 3


def settings_at(root, weights_sha="aa11"):
    return {"model": "A", "rec_iters": 200,
            "checkpoints": {"classifier": {"folder": f"{root}/checkpoints/mnist/classifier_A",
                                           "sha256": {"weights.index": weights_sha}}},
            "oracle": {"classifier": f"{root}/checkpoints/mnist/classifier_A"}}


def write_batch(records_dir, tag, settings):
    records_dir.mkdir(exist_ok=True)
    (records_dir / "batch_00000.json").write_text(json.dumps(
        {"fingerprint": tag, "settings": settings,
         "records": [{"index": i} for i in range(COUNT)]}))


def missing(records_dir, settings):
    return evaluation.missing_batches(str(records_dir), settings, COUNT, COUNT)


def test_the_fingerprint_is_the_same_in_clones_at_different_paths():
    assert portable_fingerprint(settings_at("/work/main")) == \
        portable_fingerprint(settings_at("/tmp/clone"))


def test_the_fingerprint_still_tells_other_weights_apart():
    assert portable_fingerprint(settings_at("/a")) != \
        portable_fingerprint(settings_at("/a", weights_sha="bb22"))


def test_records_written_by_a_clone_elsewhere_are_resumed(tmp_path):
    old = settings_at("/work/main")
    write_batch(tmp_path / "records", portable_fingerprint(old), old)
    assert missing(tmp_path / "records", settings_at("/tmp/clone")) == []


def test_records_with_the_old_absolute_folder_fingerprint_are_resumed(tmp_path):
    old = settings_at("/tmp/fresh")
    write_batch(tmp_path / "records", fingerprint(old), old)
    assert missing(tmp_path / "records", settings_at("/tmp/clone")) == []


def test_old_records_of_other_weights_are_recomputed(tmp_path):
    old = settings_at("/tmp/fresh", weights_sha="bb22")
    write_batch(tmp_path / "records", fingerprint(old), old)
    assert missing(tmp_path / "records", settings_at("/tmp/clone")) == [0]


def test_old_records_whose_settings_do_not_hash_to_their_fingerprint_are_recomputed(tmp_path):
    old = settings_at("/tmp/fresh")
    write_batch(tmp_path / "records", fingerprint(settings_at("/tmp/fresh", "bb22")), old)
    assert missing(tmp_path / "records", settings_at("/tmp/clone")) == [0]
