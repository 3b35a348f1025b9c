"""MagNet (Meng and Chen, CCS 2017), the Defense-GAN paper's auto-encoder baseline, as
MagNet's released MNIST code sets it up:

- two denoising auto-encoders (`networks.MagNet`) trained on clean training images with
  Gaussian noise (std 0.1, clipped to [0, 1]) added to the input and the MSE to the clean
  image as the loss (Adam 1e-3, batch 256, 100 epochs);
- detector I: the mean squared reconstruction error of auto-encoder I; detector II: the mean
  absolute error of auto-encoder II. Each detector's threshold is set on clean validation
  images so that it rejects a fraction `fpr` of them (MagNet's drop rate, 0.001 each): with
  marks sorted ascending, threshold = marks[-int(N * fpr)], and an input is rejected when its
  mark is >= the threshold;
- the reformer: auto-encoder I's output (clipped to [0, 1]) goes to the classifier.

Counting (as MagNet's evaluation, and the Defense-GAN paper's MagNet column): an adversarial
input rejected by either detector counts as handled correctly; a clean input rejected counts
as an error. Every record keeps both "rejected" and "classified correctly after reforming".
"""

import keras
import numpy as np
import tensorflow as tf

from defense_gan import checkpoints, networks
from defense_gan.errors import ConfigError

ARCHITECTURE = "magnet_meng_chen_2017_mnist"
DETECTORS = {"I": ("ae_i", 2), "II": ("ae_ii", 1)}  # name -> (auto-encoder, error norm p)
GRADIENT_MODES = ("full", "bpda", "classifier")


def detector_marks(model: networks.MagNet, x, batch_size: int = 1000) -> dict:
    """{"I": mean |x - AE_I(x)|^2, "II": mean |x - AE_II(x)|} per image (numpy float32 [N])
    for x float32 [N, H, W, C] in [0, 1]."""
    out = {name: [] for name in DETECTORS}
    for lo in range(0, len(x), batch_size):
        xb = tf.convert_to_tensor(x[lo:lo + batch_size], tf.float32)
        for name, (attr, p) in DETECTORS.items():
            err = tf.abs(xb - getattr(model, attr)(xb, training=False))
            out[name].append(tf.reduce_mean(err ** p, axis=[1, 2, 3]).numpy())
    return {name: np.concatenate(v) for name, v in out.items()}


def thresholds(marks: dict, fpr: float, flag: str = "magnet_fpr") -> dict:
    """Each detector's threshold from its marks on clean validation images (`detector_marks`):
    MagNet's rule, which rejects int(N * fpr) of them (ties aside)."""
    n = len(next(iter(marks.values())))
    num = int(n * fpr)
    if num < 1:
        raise ConfigError(f"--{flag}: {fpr} of {n} validation images rejects none; "
                          f"use at least {1 / n:g}")
    return {name: float(np.sort(m)[-num]) for name, m in marks.items()}


class MagNetTrainer(keras.Model):
    """Trains both auto-encoders of `model` at once; `train_step(x)` with x float32
    [B, H, W, C] in [0, 1] returns {"loss_I", "loss_II"} (MSE to the clean images)."""

    def __init__(self, model: networks.MagNet, noise: float, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.magnet = model
        self.noise = noise
        self.rng = tf.random.Generator.from_seed(seed)
        self.opt_i = keras.optimizers.Adam(1e-3)
        self.opt_ii = keras.optimizers.Adam(1e-3)
        self.opt_i.build(model.ae_i.trainable_variables)
        self.opt_ii.build(model.ae_ii.trainable_variables)

    def train_step(self, x):
        noisy = tf.clip_by_value(x + self.noise * self.rng.normal(tf.shape(x)), 0.0, 1.0)
        losses = {}
        for name, ae, opt in (("loss_I", self.magnet.ae_i, self.opt_i),
                              ("loss_II", self.magnet.ae_ii, self.opt_ii)):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(ae(noisy, training=True) - x))
            variables = ae.trainable_variables
            opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
            losses[name] = loss
        return losses


def build(image_shape, seed: int = 0) -> networks.MagNet:
    keras.utils.set_random_seed(seed)
    return networks.build(networks.MagNet(channels=image_shape[-1]), image_shape)


def load(folder: str, dataset: str, image_shape, flag: str = "magnet_dir"):
    """(MagNet model, manifest) from a shipped folder or a train_magnet --train_dir; a MagNet
    of another data set (or a checkpoint of another kind) is a ConfigError naming --flag."""
    model = networks.MagNet(channels=image_shape[-1])
    networks.build(model, image_shape)
    manifest = checkpoints.load(folder, model, flag, "magnet", dataset, ARCHITECTURE)
    return model, manifest


class MagNetDefense:
    """classifier o reformer, with MagNet's two detectors: the same interface as
    `defense.DefendedClassifier`, so evaluation and the modes need no MagNet branch.

    `logits(x, seed)` -> (logits [B, K] of classifier(AE_I(x)), reformed x [B, H, W, C],
    score [B]) with score = max over detectors of mark / threshold: the input is rejected
    when score >= 1. MagNet is deterministic, so `seed` is unused.
    """

    score_name = "detector_score"
    detects = True

    def __init__(self, classifier, model: networks.MagNet, detector_thresholds: dict):
        self.classifier = classifier
        self.model = model
        self.thresholds = dict(detector_thresholds)

    def reform(self, x):
        return tf.clip_by_value(self.model.ae_i(x, training=False), 0.0, 1.0)

    def score(self, x):
        x = tf.convert_to_tensor(x, tf.float32)
        ratios = []
        for name, (attr, p) in DETECTORS.items():
            err = tf.reduce_mean(tf.abs(x - getattr(self.model, attr)(x, training=False)) ** p,
                                 axis=[1, 2, 3])
            ratios.append(err / self.thresholds[name])
        return tf.reduce_max(tf.stack(ratios), axis=0)

    def logits(self, x, seed=None):
        x = tf.convert_to_tensor(x, tf.float32)
        x_ref = self.reform(x)
        return self.classifier(x_ref, training=False), x_ref, self.score(x)

    def purify_clean(self, x, k: int, count: int, seed: int, cache=None):
        """Reformed clean batch and its detector score (numpy); never cached (it is cheap)."""
        _, x_ref, score = self.logits(x)
        return x_ref.numpy(), score.numpy(), True

    def attack_model_fn(self, mode: str):
        """model_fn (x -> logits) whose gradient is what mode `mode` gives the attacker:
        full: classifier(reformer(x)) differentiated end to end; bpda: the same forward pass,
        the reformer as the identity on the backward pass; classifier: the classifier alone.
        No mode puts the detectors in the attacker's loss."""
        if mode == "full":
            return lambda x: self.classifier(self.reform(x), training=False)
        if mode == "bpda":
            return lambda x: self.classifier(
                x + tf.stop_gradient(self.reform(x) - x), training=False)
        if mode == "classifier":
            return lambda x: self.classifier(x, training=False)
        raise ValueError(f"--magnet_gradient: unknown mode '{mode}' (expected one of "
                         f"{', '.join(GRADIENT_MODES)})")


def build_defense(classifier, magnet_dir: str, dataset: str, image_shape, x_val, fpr: float):
    """(MagNetDefense, checkpoints entry, run settings) for `classifier` behind the MagNet of
    `magnet_dir`, its detector thresholds set at false positive rate `fpr` on the clean
    validation images `x_val` (float32 in [0, 1]; MagNet's rule). Shared by whitebox and
    blackbox."""
    model, manifest = load(magnet_dir, dataset, image_shape)
    detector_thresholds = thresholds(detector_marks(model, x_val), fpr)
    defended = MagNetDefense(classifier, model, detector_thresholds)
    used = {"magnet": {"folder": manifest["folder"], "sha256": manifest["files"],
                       "epochs": manifest.get("epochs")}}
    # Rounded in the settings (not in the defense): the marks' last bits differ between CPUs
    # (oneDNN's kernels), and the settings are the resume fingerprint of the run's records.
    settings = {"magnet_fpr": fpr,
                "magnet_thresholds": {k: float(f"{v:.4g}") for k, v in
                                      detector_thresholds.items()},
                "magnet_thresholds_rounding": "4 significant digits",
                "counting": "an adversarial input rejected by a detector counts as correct, a "
                            "rejected clean input as an error (MagNet's evaluation)"}
    return defended, used, settings
