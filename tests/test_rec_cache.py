"""The reconstruction cache of whole splits (rec_cache.ReconstructionCache): refusals of another
key, sha256-checked chunks, resuming a killed build, and identical results either way. A toy
dense generator and a projector that counts its calls; 10 images in chunks of 4 (batches of 2)."""

import json

import numpy as np
import pytest

import conftest
from defense_gan import rec_cache
from defense_gan.errors import ConfigError
from defense_gan.projection import ProjectionSettings, Projector

SHAPE = (28, 28, 1)
LATENT = 8
BATCH, CHUNK, N = 2, 4, 10  # 3 chunks: 4 + 4 + 2 images
SETTINGS = ProjectionSettings(rec_iters=3, rec_rr=2, rec_lr=1.0, batch_size=BATCH)
MANIFEST = {"files": {"weights.index": "a" * 64}}


class Counting:
    """A projector wrapper that counts the images it projects."""

    def __init__(self, projector):
        self.projector = projector
        self.settings = projector.settings
        self.images = 0

    def __call__(self, x, seed):
        self.images += len(x)
        return self.projector(x, seed)


@pytest.fixture(scope="module")
def projector():
    return Projector(conftest.dense_generator(2, LATENT, SHAPE), SHAPE, LATENT, SETTINGS)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 1, (N, *SHAPE)).astype(np.float32)


def key(settings=SETTINGS, manifest=MANIFEST):
    return {**rec_cache.projection_key(manifest, settings, 0, "float32"), "dataset": "mnist",
            "chunk_size": CHUNK}


def build(folder, projector, images, k=None, progress=lambda m: None):
    return rec_cache.ReconstructionCache(str(folder), k or key()).build(
        "train", images, projector, 0, CHUNK, progress=progress)


def test_a_build_writes_key_json_and_indexes_each_chunk_with_its_sha256(tmp_path, projector,
                                                                          images):
    x_rec, mse, _ = build(tmp_path, projector, images)
    assert x_rec.shape == (N, *SHAPE) and mse.shape == (N,)
    assert json.loads((tmp_path / "key.json").read_text()) == json.loads(json.dumps(key()))
    index = json.loads((tmp_path / "train" / "index.json").read_text())
    assert sorted(index) == ["chunk_00000", "chunk_00001", "chunk_00002"]
    assert [index[c]["count"] for c in sorted(index)] == [4, 4, 2]
    for name, entry in index.items():
        assert entry["sha256"] == rec_cache._sha256((tmp_path / "train" / f"{name}.npz")
                                                    .read_bytes())


def test_the_cache_holds_the_projection_of_each_batch_with_seed_seed_and_batch_index(
        tmp_path, projector, images):
    x_rec, _, _ = build(tmp_path, projector, images)
    # Image 6 is in chunk 1, batch 3 overall (seed [0, 3]), position 0.
    expected = projector(images[6:8], [0, 3])[0].numpy()
    np.testing.assert_array_equal(x_rec[6:8], expected)


def test_a_second_build_projects_nothing_and_returns_the_same(tmp_path, projector, images):
    first = build(tmp_path, projector, images)
    counting = Counting(projector)
    second = build(tmp_path, counting, images)
    assert counting.images == 0 and second[2]["computed_images"] == 0
    np.testing.assert_array_equal(first[0], second[0])


def test_a_killed_build_resumes_at_the_next_missing_chunk_and_equals_a_build_in_one_go(
        tmp_path, projector, images):
    one_go = build(tmp_path / "one_go", projector, images)[0]

    def kill_after_first_chunk(message):
        raise KeyboardInterrupt(message)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path / "resumed", projector, images, progress=kill_after_first_chunk)
    counting = Counting(projector)
    resumed = build(tmp_path / "resumed", counting, images)[0]
    assert counting.images == 4 + 2  # chunks 1 and 2 only, in batches of 2, none padded
    np.testing.assert_array_equal(resumed, one_go)


def test_a_cache_of_another_generator_is_refused_naming_the_flag_and_folder(tmp_path, projector,
                                                                             images):
    build(tmp_path, projector, images)
    other = {"files": {"weights.index": "b" * 64}}
    with pytest.raises(ConfigError, match=r"^--recs_dir: '.*' holds reconstructions made with "
                                          r"other settings \(another generator") as err:
        rec_cache.ReconstructionCache(str(tmp_path), key(manifest=other))
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("field,value", [("rec_iters", 5), ("rec_rr", 3)])
def test_a_cache_with_other_l_or_r_is_refused_saying_what_differs(tmp_path, projector, images,
                                                                  field, value):
    build(tmp_path, projector, images)
    settings = ProjectionSettings(**{**SETTINGS.__dict__, field: value})
    old = getattr(SETTINGS, field)
    with pytest.raises(ConfigError, match=f"{field} {old} there, {value} here"):
        rec_cache.ReconstructionCache(str(tmp_path), key(settings))


def test_a_truncated_chunk_is_named_in_the_error(tmp_path, projector, images):
    build(tmp_path, projector, images)
    chunk = tmp_path / "train" / "chunk_00001.npz"
    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(ConfigError, match=r"--recs_dir: cache chunk '.*chunk_00001\.npz' fails "
                                          r"its sha256 check \(truncated or modified\)"):
        build(tmp_path, projector, images)


def test_chunks_built_from_other_images_are_refused(tmp_path, projector, images):
    build(tmp_path, projector, images)
    with pytest.raises(ConfigError, match="chunk_00000.npz' was built from other train images"):
        build(tmp_path, projector, images[::-1].copy())


def test_a_non_empty_folder_without_key_json_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not empty and has no key.json"):
        rec_cache.ReconstructionCache(str(tmp_path), key())


def test_chunks_load_without_pickles(tmp_path, projector, images):
    """A chunk holding a pickled object array (same sha256 in the index) is not loaded."""
    build(tmp_path, projector, images)
    store = rec_cache.ChunkStore(str(tmp_path / "train"), "recs_dir")
    store.put("chunk_00000", {"x_rec": np.array([{"evil": 1}], dtype=object),
                              "mse": np.zeros(4, np.float32)}, count=4)
    with pytest.raises(ValueError, match="allow_pickle"):
        store.get("chunk_00000")
