"""The Python API: load the shipped models and defend a classifier from your own code.

    import defense_gan
    generator = defense_gan.load_generator("mnist")
    classifier = defense_gan.load_classifier("F", dataset="mnist")
    purifier = defense_gan.Purifier(generator, rec_iters=200, rec_rr=10, seed=0)
    x_rec = purifier.purify(x)                    # float32 [N, 28, 28, 1] in [0, 1]
    model = defense_gan.DefendedClassifier(classifier, purifier, gradient="bpda")
    logits = model(x)                             # classifier(P(x)); a keras.Model

`DefendedClassifier` is a `keras.Model`, so attack libraries that take a TensorFlow 2 model
(ART's `TensorFlowV2Classifier`, foolbox's `TensorFlowModel`) attack it directly; its gradient
is the one named by `gradient` (see `defense.defended_logits`). Checkpoints are found under
`paths.checkpoints_root()` (the repository's checkpoints/, the copy installed with the package,
$DEFENSE_GAN_CHECKPOINTS, or a `checkpoints_dir` argument).
"""

import json
import os

import keras
import tensorflow as tf

from defense_gan import checkpoints, classifiers, config, defense, gan, hardware, paths
from defense_gan.purifier import Purifier, check_images

GRADIENT_MODES = defense.GRADIENT_MODES


def _checkpoint_folder(path: str, argument: str, expected: str) -> str:
    """The checkpoint folder `path` (or its export/), else ValueError naming `argument`."""
    if not os.path.isdir(path):
        raise ValueError(f"{argument}: '{path}' is neither {expected} nor a checkpoint folder")
    return checkpoints.resolve_model_dir(path, argument)


def _manifest_field(folder: str, key: str):
    try:
        with open(os.path.join(folder, checkpoints.MANIFEST)) as f:
            return json.load(f).get(key)
    except (OSError, ValueError):
        return None  # the loader below reports the unreadable manifest


def load_generator(dataset: str = "mnist", *, precision: str = "float32",
                   checkpoints_dir: str | None = None) -> keras.Model:
    """The generator z float32 [N, latent_dim] -> images float32 [N, H, W, C] in [0, 1].

    dataset: a data set name ("mnist", "fashion_mnist"): the shipped generator
      <checkpoints_dir>/<dataset>/gan; or a checkpoint folder (shipped-style, or a training
      run's --train_dir), whose manifest names its data set.
    precision: "float32" or "bfloat16" (float32, with a message, on a CPU without bfloat16).
    Checksums and architecture are verified (ConfigError otherwise). The manifest is kept as
    `generator.defense_gan_manifest`.
    """
    if dataset in config.DATASETS:
        shipped = os.path.join(paths.checkpoints_root(checkpoints_dir), dataset, "gan")
        if not os.path.isdir(shipped):
            raise ValueError(f"dataset: no shipped generator for '{dataset}' in '{shipped}'")
        folder = shipped
    else:
        folder = _checkpoint_folder(dataset, "dataset",
                                    f"a data set ({', '.join(config.DATASETS)})")
        dataset = _manifest_field(folder, "dataset") or ""
    if precision not in config.PRECISIONS:
        raise ValueError(f"precision: must be one of {', '.join(config.PRECISIONS)}, "
                         f"got {precision!r}")
    generator, manifest = gan.load_generator(folder, dataset, hardware.resolve_precision(precision))
    object.__setattr__(generator, "defense_gan_manifest", manifest)  # not a tracked attribute
    return generator


def load_classifier(model: str = "F", dataset: str = "mnist", *, precision: str = "float32",
                    checkpoints_dir: str | None = None) -> keras.Model:
    """A classifier x float32 [N, H, W, C] in [0, 1] -> logits float32 [N, 10].

    model: an architecture of the release ("A" .. "F", or "A_adv" / "B_adv" for the shipped
      adversarially trained ones): the shipped <checkpoints_dir>/<dataset>/classifier_<model>;
      or a checkpoint folder, whose manifest names its architecture.
    """
    if precision not in config.PRECISIONS:
        raise ValueError(f"precision: must be one of {', '.join(config.PRECISIONS)}, "
                         f"got {precision!r}")
    if dataset not in config.DATASETS:
        raise ValueError(f"dataset: must be one of {', '.join(config.DATASETS)}, got {dataset!r}")
    arch = model[:-len("_adv")] if model.endswith("_adv") else model
    if arch in config.MODELS:
        folder = os.path.join(paths.checkpoints_root(checkpoints_dir), dataset,
                              f"classifier_{model}")
        if not os.path.isdir(folder):
            raise ValueError(f"model: no shipped classifier '{model}' for '{dataset}' in "
                             f"'{folder}'")
    else:
        folder = _checkpoint_folder(model, "model", f"a model ({', '.join(config.MODELS)})")
        arch = (_manifest_field(folder, "architecture") or "").replace(
            classifiers.ARCHITECTURE_PREFIX, "", 1)
        if arch not in config.MODELS:
            raise ValueError(f"model: '{model}' holds no classifier of architecture "
                             f"{', '.join(config.MODELS)}")
    classifier, manifest = classifiers.load_classifier(
        folder, dataset, arch, hardware.resolve_precision(precision))
    object.__setattr__(classifier, "defense_gan_manifest", manifest)
    return classifier


class DefendedClassifier(keras.Model):
    """classifier(purifier(x)) as a Keras model, with the attacker's gradient `gradient`.

    call(x): x float32 [N, H, W, C] in [0, 1] (any N) -> logits float32 [N, K] of the
      classifier on the purified images (projection seed: `purifier.seed`; chunk k of a call
      uses [seed, k], as `--mode=whitebox` does for its batch k).
    gradient: "bpda" (the projection's backward pass is the identity: the classifier's
      gradient at P(x); Athalye et al. 2018) or "classifier" (the undefended classifier's
      Jacobian at x). The forward pass is the same for both.
    """

    def __init__(self, classifier, purifier: Purifier, gradient: str = "bpda", **kwargs):
        super().__init__(**kwargs)
        if gradient not in GRADIENT_MODES:
            raise ValueError(f"gradient: must be one of {', '.join(GRADIENT_MODES)}, "
                             f"got {gradient!r}")
        if not isinstance(purifier, Purifier):
            raise ValueError(f"purifier: expected a defense_gan.Purifier, got "
                             f"{type(purifier).__name__}")
        self.classifier = classifier
        self.gradient = gradient
        object.__setattr__(self, "purifier", purifier)  # a tf.Module, not a Keras layer
        self.built = True  # nothing to build; Keras would otherwise trace call symbolically

    def logits(self, x, seed):
        """classifier(P(x)) with projection seed `seed` (int32 []), gradient `self.gradient`.
        x: float32 tensor [N, H, W, C] in [0, 1]."""
        x_rec, _ = self.purifier.project(tf.stop_gradient(x), seed)
        return defense.defended_logits(self.classifier, x, x_rec, self.gradient)

    def call(self, x, training=False):
        return self.logits(check_images(x, self.purifier.image_shape),
                           tf.constant(self.purifier.seed, tf.int32))

    def predict_labels(self, x):
        """argmax of the defended logits, int64 numpy [N]."""
        return tf.argmax(self(x), axis=1).numpy()


__all__ = ["load_generator", "load_classifier", "Purifier", "DefendedClassifier"]
