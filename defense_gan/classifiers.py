"""Classifier training (plain and FGSM adversarial training) and loading.

The one place that creates classifiers and their optimizers (wrap in a strategy scope to
distribute). Training follows the release: Adam lr 1e-3, batch 50, 10 epochs; the
adversarial-training baseline minimises (xent(clean) + xent(FGSM_eps(x))) / 2 with FGSM
computed on the current model at its predicted labels (CleverHans' default, no label leaking).
"""

import keras
import numpy as np
import tensorflow as tf

from defense_gan import checkpoints, data, dataset_spec, networks
from defense_gan.attacks import fgsm

ARCHITECTURE_PREFIX = "release_classifier_"


def xent(labels, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))


class ClassifierTrainer(keras.Model):
    """Wraps a `networks.Classifier`; `train_step((x, y))` with x float32 [B, H, W, C] in
    pixel_range, y int64 [B] returns {"loss", "accuracy"} (accuracy on the clean batch). The
    adversarial examples are clipped to pixel_range ([-1, 1] for CelebA, as the release)."""

    def __init__(self, classifier, adv_eps: float | None = None, pixel_range=(0.0, 1.0),
                 **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.adv_eps = adv_eps
        self.pixel_range = tuple(pixel_range)

    def call(self, x, training=False):
        return self.classifier(x, training=training)

    def train_step(self, batch):
        x, y = batch
        if self.adv_eps:
            x_adv = tf.stop_gradient(fgsm(lambda t: self.classifier(t, training=False), x,
                                          self.adv_eps, clip_min=self.pixel_range[0],
                                          clip_max=self.pixel_range[1]))
        with tf.GradientTape() as tape:
            logits = self.classifier(x, training=True)
            loss = xent(y, logits)
            if self.adv_eps:
                loss = 0.5 * (loss + xent(y, self.classifier(x_adv, training=True)))
        variables = self.classifier.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))
        return {"loss": loss, "accuracy": accuracy}

    def distributed_train_step(self, strategy, global_batch: int):
        """`train_step` under a tf.distribute `strategy` (classifier and optimizer built in its
        scope): a tf.function step((x, y)) on per-replica slices of the global batch
        (`distribute.split_batch`) returning {"loss", "accuracy"} over the global batch. The
        loss is the per-example cross-entropy averaged over the GLOBAL batch, so the summed
        replica gradients are the one-device gradient up to float rounding. Dropout masks
        (models A-D) differ from a one-device run's; FGSM's sign is per example, so adversarial
        training is unchanged."""
        from defense_gan import distribute  # noqa: PLC0415 (only distributed runs need it)
        distribute.per_replica_batch(strategy, global_batch)

        def average(per_example):
            return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)

        def replica(x, y):
            if self.adv_eps:
                x_adv = tf.stop_gradient(fgsm(lambda t: self.classifier(t, training=False), x,
                                              self.adv_eps))
            xent_i = tf.nn.sparse_softmax_cross_entropy_with_logits  # per example [B]
            with tf.GradientTape() as tape:
                logits = self.classifier(x, training=True)
                per_example = xent_i(y, logits)
                if self.adv_eps:
                    per_example = 0.5 * (per_example
                                         + xent_i(y, self.classifier(x_adv, training=True)))
                loss = average(per_example)
            variables = self.classifier.trainable_variables
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            correct = tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32)
            return {"loss": loss, "accuracy": average(correct)}

        @tf.function
        def step(batch):
            return distribute.reduce_sum(strategy, strategy.run(replica, args=batch))
        return step


def build_trainer(model: str, lr: float = 1e-3, seed: int = 0, precision: str = "float32",
                  adv_eps: float | None = None,
                  spec: dataset_spec.DatasetSpec = dataset_spec.MNIST) -> ClassifierTrainer:
    """Classifier `model` for data set `spec` + Adam, all variables created (so restores are
    strict)."""
    keras.utils.set_random_seed(seed)
    classifier = networks.classifier(spec, model, precision)
    trainer = ClassifierTrainer(classifier, adv_eps, spec.pixel_range)
    trainer.compile(optimizer=keras.optimizers.Adam(lr))
    trainer.optimizer.build(classifier.trainable_variables)
    return trainer


def accuracy(classifier, images: np.ndarray, labels: np.ndarray, batch_size: int = 500,
             pixel_range=(0.0, 1.0)) -> float:
    """Top-1 accuracy of `classifier` on uint8 or float images (uint8 are scaled to
    pixel_range, as `data.to_float`)."""
    correct = 0
    for lo in range(0, len(images), batch_size):
        x = images[lo:lo + batch_size]
        x = data.to_float(x, pixel_range) if x.dtype == np.uint8 else x.astype(np.float32)
        pred = tf.argmax(classifier(x, training=False), axis=1).numpy()
        correct += int((pred == labels[lo:lo + batch_size]).sum())
    return correct / len(images)


def architecture_name(model: str) -> str:
    return ARCHITECTURE_PREFIX + model


def load_classifier(folder: str, dataset: str, model: str, precision: str = "float32",
                    flag: str = "classifier_dir"):
    """(classifier, manifest) from a shipped or exported classifier folder (or --train_dir);
    the manifest must name `dataset` and the architecture `model` (built for that data set's
    image shape and classes)."""
    classifier = networks.classifier(dataset_spec.get(dataset), model, precision)
    manifest = checkpoints.load(folder, classifier, flag, "classifier", dataset,
                                architecture_name(model))
    return classifier, manifest
