"""Data sets as numpy splits and `tf.data` pipelines.

Sources:
- `bundled`: gzipped IDX files shipped in `data/<dataset>/`, verified by the SHA-256 of the
  decompressed bytes on every load (see data/mnist/README.md for provenance and licence).
- `tfds`: `tensorflow_datasets.load`, same split and value range.

Split as the original release: train = first 50,000 training images, validation = the last
10,000, test = the 10,000 test images. Images are uint8 [N, 28, 28, 1] in the splits and become
float32 in the data set's pixel range ([0, 1]; `dataset_spec`) in the pipelines.

CelebA (not bundled: 1.4 GB) comes from a folder of the aligned images with the attribute file
(`load_celeba_dir`, the default folder is data/celeba) or from TFDS `celeb_a`: uint8
[N, 64, 64, 3] (center crop 108, resize 64, as the release), label 1 for "Male", float32 in
[-1, 1] in the pipelines.
"""

import dataclasses
import gzip
import hashlib
import os

import numpy as np
import tensorflow as tf

from defense_gan import dataset_spec, paths
from defense_gan.errors import ConfigError

VALIDATION_SIZE = 10_000

# The checksummed IDX files live with the data set's spec; the names stay here for callers.
MNIST_FILES = dataset_spec.MNIST_FILES
FASHION_MNIST_FILES = dataset_spec.FASHION_MNIST_FILES
BUNDLED_FILES = {name: spec.bundled_files for name, spec in dataset_spec.SPECS.items()
                 if spec.bundled_files is not None}

# CelebA as the release prepares it (datasets/celeba.py, datasets/dataset.py): a 108x108
# center crop of the 178x218 aligned image, resized to 64x64 (scipy's bilinear imresize; here
# TF's antialiased bilinear). Without list_eval_partition.txt the release's own split by image
# number: train 1..162770, validation 162771..182637, test 182638..202599 (= the official one).
CELEBA_CROP, CELEBA_SIZE = 108, 64
CELEBA_LAST_TRAIN, CELEBA_LAST_VAL = 162_770, 182_637
CELEBA_ATTR_FILE, CELEBA_PARTITION_FILE = "list_attr_celeba.txt", "list_eval_partition.txt"
CELEBA_LABEL_ATTRIBUTE = "male"
CELEBA_IMAGE_DIRS = ("", "img_align_celeba")   # where the images may be, under --data_dir
CELEBA_ANNO_DIRS = ("", "Anno", "Eval")         # where the two text files may be


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
                              f"expected {sha256[:16]}...): the file is damaged or belongs to "
                              "another data set")
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
    """The same splits through `tfds.load` (the TFDS data must already be prepared). For
    `celeb_a`: TFDS' own train / validation / test splits, images cropped and resized as
    `celeba_crop_resize`, label the "Male" attribute."""
    import tensorflow_datasets as tfds  # Imported lazily: slow, and only this source needs it.

    def to_numpy(ds):
        # Not tfds.load(batch_size=-1): that batches by the split sizes in the metadata, and
        # where they are unknown (e.g. tfds.testing.mock_data) by sys.maxsize, which aborts
        # the process inside TensorFlow (std::length_error) instead of raising.
        chunks = list(tfds.as_numpy(ds.batch(10_000)))
        if not chunks:
            raise ValueError("the split is empty")
        return (np.concatenate([x for x, _ in chunks]),
                np.concatenate([y for _, y in chunks]).astype(np.int64))

    def celeba_example(example):
        return (celeba_crop_resize(example["image"]),
                tf.cast(example["attributes"]["Male"], tf.int64))

    try:
        if name == dataset_spec.get("celeba").tfds_name:
            parts = tfds.load(name, split=["train", "validation", "test"], data_dir=data_dir)
            arrays = [to_numpy(ds.map(celeba_example, num_parallel_calls=tf.data.AUTOTUNE))
                      for ds in parts]
            return Splits(*(a for pair in arrays for a in pair))
        train, test = tfds.load(name, split=["train", "test"], data_dir=data_dir,
                                as_supervised=True)
        (x_train, y_train), (x_test, y_test) = to_numpy(train), to_numpy(test)
    except Exception as err:  # TFDS raises many kinds; all mean the same to the user.
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"--data_source=tfds: tfds.load('{name}') failed: {first}") from None
    return _split(x_train, y_train, x_test, y_test, validation_size)


# --- CelebA from a folder of aligned images ------------------------------------------------------

def celeba_crop_resize(image: tf.Tensor) -> tf.Tensor:
    """uint8 [H, W, 3] -> uint8 [64, 64, 3]: the release's center crop of 108x108 (offsets
    rounded half up, as its Python 2 round) resized to 64x64 (bilinear, antialiased, as
    scipy.misc.imresize through PIL). Images smaller than 108 are cropped to their shorter
    side."""
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    crop = tf.minimum(CELEBA_CROP, tf.minimum(h, w))
    top, left = (h - crop + 1) // 2, (w - crop + 1) // 2
    patch = tf.cast(image[top:top + crop, left:left + crop, :3], tf.float32)
    resized = tf.image.resize(patch, [CELEBA_SIZE, CELEBA_SIZE], method="bilinear",
                              antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def _find(data_dir: str, name: str, subdirs) -> str | None:
    for sub in subdirs:
        path = os.path.join(data_dir, sub, name)
        if os.path.isfile(path):
            return path
    return None


def read_celeba_attributes(path: str):
    """list_attr_celeba.txt -> (image file names [N], labels int64 [N]: 1 where "Male" is 1,
    0 where it is -1). Format: the image count, a header of attribute names, then one line
    per image: its file name and one value (-1 or 1) per attribute."""
    with open(path) as f:
        lines = [line.split() for line in f.read().splitlines()]
    lines = [parts for parts in lines if parts]
    if lines and len(lines[0]) == 1 and lines[0][0].isdigit():
        lines = lines[1:]  # the count line of the official file
    header = [name.lower() for name in lines[0]] if lines else []
    if CELEBA_LABEL_ATTRIBUTE not in header:
        raise ConfigError(f"--data_dir: '{path}' has no 'Male' attribute column in its header")
    col = header.index(CELEBA_LABEL_ATTRIBUTE)
    names, labels = [], []
    for number, parts in enumerate(lines[1:], start=3):
        if len(parts) != len(header) + 1 or parts[col + 1] not in ("1", "-1"):
            raise ConfigError(f"--data_dir: '{path}' line {number} is not '<image> "
                              f"{len(header)} values of -1 or 1'")
        names.append(parts[0])
        labels.append((int(parts[col + 1]) + 1) // 2)
    return names, np.asarray(labels, np.int64)


def _celeba_partition(data_dir: str, names) -> np.ndarray:
    """Split of each image (0 train, 1 validation, 2 test): from list_eval_partition.txt if
    --data_dir has it, else the release's ranges of image numbers."""
    path = _find(data_dir, CELEBA_PARTITION_FILE, CELEBA_ANNO_DIRS)
    if path is None:
        try:
            numbers = np.asarray([int(os.path.splitext(n)[0]) for n in names])
        except ValueError:
            raise ConfigError(f"--data_dir: '{data_dir}' has no {CELEBA_PARTITION_FILE}, and "
                              "the release's split needs numbered images (000001.jpg, ...)"
                              ) from None
        return (numbers > CELEBA_LAST_TRAIN).astype(np.int64) + (numbers > CELEBA_LAST_VAL)
    with open(path) as f:
        split_of = dict(line.split()[:2] for line in f if line.strip())
    missing = [n for n in names if n not in split_of]
    if missing:
        raise ConfigError(f"--data_dir: '{path}' does not list image '{missing[0]}'")
    return np.asarray([int(split_of[n]) for n in names], np.int64)


def _decode_celeba(paths) -> np.ndarray:
    """Image files -> uint8 [N, 64, 64, 3] (`celeba_crop_resize`), in order."""
    if not paths:
        return np.zeros((0, CELEBA_SIZE, CELEBA_SIZE, 3), np.uint8)

    def decode(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return celeba_crop_resize(image)

    ds = tf.data.Dataset.from_tensor_slices(list(paths)).map(
        decode, num_parallel_calls=tf.data.AUTOTUNE).batch(1024)
    try:
        return np.concatenate(list(ds.as_numpy_iterator()))
    except tf.errors.OpError:
        for path in paths:  # Which one? (slow, but only when a file is broken)
            try:
                decode(path)
            except tf.errors.OpError:
                raise ConfigError(f"--data_dir: image '{path}' cannot be decoded "
                                  "(not a JPEG/PNG/BMP/GIF image?)") from None
        raise


def load_celeba_dir(data_dir: str, train_limit: int = 0) -> Splits:
    """CelebA from a folder: the aligned images (in it or in its img_align_celeba/), and
    list_attr_celeba.txt (and list_eval_partition.txt if present; in it, Anno/ or Eval/).
    Images uint8 [N, 64, 64, 3] in the order of the attribute file; with train_limit > 0 only
    the first train_limit training images are decoded."""
    if not os.path.isdir(data_dir):
        raise ConfigError(f"--data_dir: '{data_dir}' does not exist (CelebA is not bundled: "
                          f"give the folder of aligned images with {CELEBA_ATTR_FILE}, or "
                          "--data_source=tfds)")
    attr_path = _find(data_dir, CELEBA_ATTR_FILE, CELEBA_ANNO_DIRS)
    if attr_path is None:
        raise ConfigError(f"--data_dir: '{data_dir}' has no {CELEBA_ATTR_FILE} (CelebA's "
                          "attribute file; also looked in Anno/)")
    names, labels = read_celeba_attributes(attr_path)
    if not names:
        raise ConfigError(f"--data_dir: '{attr_path}' lists no images")
    image_dir = next((os.path.join(data_dir, sub) for sub in CELEBA_IMAGE_DIRS
                      if os.path.isfile(os.path.join(data_dir, sub, names[0]))), None)
    if image_dir is None:
        raise ConfigError(f"--data_dir: '{data_dir}' has no images: '{names[0]}' (the first "
                          f"in {CELEBA_ATTR_FILE}) is neither there nor in img_align_celeba/")
    paths = [os.path.join(image_dir, n) for n in names]
    missing = next((p for p in paths if not os.path.isfile(p)), None)
    if missing:
        raise ConfigError(f"--data_dir: image '{missing}' listed in {CELEBA_ATTR_FILE} is "
                          "missing")
    split = _celeba_partition(data_dir, names)
    arrays = []
    for k, split_name in enumerate(("training", "validation", "test")):
        idx = np.flatnonzero(split == k)
        if not len(idx):
            raise ConfigError(f"--data_dir: no {split_name} images in '{data_dir}' (split "
                              f"by {CELEBA_PARTITION_FILE} or the release's image numbers)")
        if k == 0 and train_limit:
            idx = idx[:train_limit]
        arrays += [_decode_celeba([paths[i] for i in idx]), labels[idx]]
    return Splits(*arrays)


def load(dataset: str, source: str = "bundled", data_dir: str | None = None,
         train_limit: int = 0) -> Splits:
    """The splits of `dataset`; with train_limit > 0 only the first train_limit training
    images are kept (validation and test are unchanged)."""
    splits = _load(dataset, source, data_dir, train_limit)
    if train_limit:
        splits = dataclasses.replace(splits, x_train=splits.x_train[:train_limit],
                                     y_train=splits.y_train[:train_limit])
    return splits


def _load(dataset: str, source: str, data_dir: str | None, train_limit: int = 0) -> Splits:
    if dataset not in dataset_spec.SPECS:
        raise ConfigError(f"--dataset: '{dataset}' is not implemented yet")
    spec = dataset_spec.get(dataset)
    if source == "tfds":
        return load_tfds(spec.tfds_name, data_dir)
    data_dir = data_dir or os.path.join(paths.data_root(), dataset)
    if spec.bundled_files is None:
        return load_celeba_dir(data_dir, train_limit)
    return load_bundled(data_dir, spec.bundled_files)


def to_float(images, pixel_range=(0.0, 1.0)) -> tf.Tensor:
    """uint8 [..] in 0..255 -> float32 in pixel_range ((0, 1): x / 255; CelebA's (-1, 1):
    2 * (x / 255 - 0.5), as the release)."""
    unit = tf.cast(images, tf.float32) / 255.0
    low, high = pixel_range
    if (low, high) == (0.0, 1.0):
        return unit
    return (high - low) * (unit - 0.5) + (high + low) / 2.0


def resumable_batches(arrays, batch_size: int, seed: int, start_step: int = 0,
                      group: int = 1, pixel_range=(0.0, 1.0)) -> tf.data.Dataset:
    """Endless shuffled batches whose order is a pure function of (seed, step).

    arrays: one image array [N, H, W, C] (uint8 in 0..255, or float32 in [0, 1] such as
      reconstructions), or a tuple (images, labels).
    Step s yields `group` batches (images shaped [group, batch, H, W, C] when group > 1, else
    [batch, H, W, C], float32 in pixel_range; labels int64 alongside when given), drawn without
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
        x = tf.gather(table, idx)
        x = to_float(x, pixel_range) if x.dtype == tf.uint8 else tf.cast(x, tf.float32)
        x = tf.reshape(x, shape + list(images.shape[1:]))
        if not with_labels:
            return x
        return x, tf.reshape(tf.gather(label_table, idx), shape)

    return (tf.data.Dataset.counter(start_step).map(step_to_batch, num_parallel_calls=2)
            .prefetch(2))


def eval_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int,
                 drop_remainder: bool = False, pixel_range=(0.0, 1.0)) -> tf.data.Dataset:
    """In-order (image float32 [B,H,W,C] in pixel_range, label int64 [B]) batches."""
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    return ds.batch(batch_size, drop_remainder=drop_remainder).map(
        lambda x, y: (to_float(x, pixel_range), y)).prefetch(2)
