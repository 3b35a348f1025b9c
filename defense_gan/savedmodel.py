"""A SavedModel of Defense-GAN: deploy the defense where no Python source is shipped.

One SavedModel per data set, loadable with `tf.saved_model.load(folder)` alone (TensorFlow,
no defense_gan), with three signatures, each taking
    images  float32 [N, H, W, C] in [0, 1] (any N; values outside [0, 1] fail an assertion)
    seed    int32 []  (the projection's restarts of chunk k are drawn with [seed, k], so equal
                       inputs give equal outputs)
and returning a dict:
    purify                 {"purified": float32 [N, H, W, C]}   G(z*) of each image
    reconstruction_error   {"mse": float32 [N]}                 per-pixel MSE of G(z*) vs x
    classify               {"logits": float32 [N, K]}           classifier(G(z*)), defended
The projection settings (L, R, learning rate, chunk size) are fixed at export and recorded in
the folder's defense_gan.json beside saved_model.pb, with the checkpoints' sha256s.
"""

import os

import tensorflow as tf

from defense_gan.checkpoints import environment
from defense_gan.files import replace_dir_atomic, write_json_atomic

SIGNATURES = ("purify", "reconstruction_error", "classify")
INFO = "defense_gan.json"


class DefenseModule(tf.Module):
    """The exported object: a `Purifier` and its classifier, with one tf.function per
    signature."""

    def __init__(self, purifier, classifier):
        super().__init__(name="defense_gan")
        self.purifier = purifier
        self.classifier = classifier
        spec = [tf.TensorSpec([None, *purifier.image_shape], tf.float32, name="images"),
                tf.TensorSpec([], tf.int32, name="seed")]
        self.purify = tf.function(lambda images, seed: {
            "purified": purifier.project(images, seed)[0]}, input_signature=spec)
        self.reconstruction_error = tf.function(lambda images, seed: {
            "mse": purifier.project(images, seed)[1]}, input_signature=spec)
        self.classify = tf.function(lambda images, seed: {
            "logits": classifier(purifier.project(images, seed)[0], training=False)},
            input_signature=spec)


def save(folder: str, purifier, classifier, info: dict) -> dict:
    """Write the SavedModel of `purifier` + `classifier` to `folder`, replacing it atomically;
    `info` (data set, checkpoints, ...) goes into defense_gan.json with the projection
    settings and the signatures. Returns what was written there."""
    module = DefenseModule(purifier, classifier)
    shape = ", ".join(map(str, purifier.image_shape))
    full = {**info, "projection": dict(purifier.settings.__dict__),
            "precision": purifier.precision, "image_shape": list(purifier.image_shape),
            "signatures": {name: {"inputs": {"images": f"float32 [N, {shape}] in [0, 1]",
                                              "seed": "int32 []: chunk k of "
                                              f"{purifier.settings.batch_size} images uses "
                                              "[seed, k]"}}
                           for name in SIGNATURES},
            "environment": environment()}

    def fill(tmp):
        tf.saved_model.save(module, tmp, signatures={
            name: getattr(module, name).get_concrete_function() for name in SIGNATURES})
        write_json_atomic(os.path.join(tmp, INFO), full)
        return full
    return replace_dir_atomic(folder, fill)
