"""The defended classifier: classifier(G(z*(x))), and the gradient an attacker gets through it.

Gradient modes (`--gradient`), i.e. what `attack_model_fn` returns:
- `classifier`: the attacker differentiates the undefended classifier; the adversarial image
  is then passed through the defense. This is what the authors advised in the release's
  issue #1, and what the release's white-box numbers amount to at best.
- `bpda`: Backward Pass Differentiable Approximation (Athalye, Carlini, Wagner 2018): the
  forward pass is the full defense classifier(P(x)); the backward pass treats the projection P
  as the identity, so the gradient is grad_{x'} loss(classifier(x')) evaluated at x' = P(x).

In the release as shipped the gradient through the unrolled projection vanished, so FGSM
returned the unperturbed image (its issues #1, #14): its white-box Defense-GAN column is in
effect the accuracy on reconstructions of clean images (`defended_clean_accuracy` here).
"""

import tensorflow as tf

GRADIENT_MODES = ("classifier", "bpda")


class DefendedClassifier:
    """classifier o projection.

    classifier: x float32 [N, H, W, C] in [0, 1] -> logits float32 [N, K].
    projector: a `projection.Projector` (fixed batch size B).
    `logits(x, seed)` -> (logits [B, K], x_rec [B, H, W, C], mse [B]).
    """

    def __init__(self, classifier, projector, seed: int = 0):
        self.classifier = classifier
        self.projector = projector
        # Seed of the projection inside the BPDA forward pass; set per batch by the caller.
        self.attack_seed = tf.Variable([seed, 0], dtype=tf.int32, trainable=False)
        # One known projection (see `remember`).
        shape = [projector.settings.batch_size, *projector.image_shape]
        self._memo_x = tf.Variable(tf.zeros(shape), trainable=False)
        self._memo_rec = tf.Variable(tf.zeros(shape), trainable=False)
        self._memo_seed = tf.Variable([0, 0], dtype=tf.int32, trainable=False)
        self._memo_set = tf.Variable(False, trainable=False)

    def remember(self, x, x_rec, seed) -> None:
        """Record that P(x) with `seed` is x_rec (e.g. the cached clean reconstruction), so the
        BPDA forward pass at exactly x and seed reuses it instead of projecting again. The
        projection is deterministic given x and the seed, so the attack is unchanged (tested);
        FGSM through BPDA, whose one gradient is taken at the clean image, then costs one
        projection per image instead of two."""
        self._memo_x.assign(x)
        self._memo_rec.assign(x_rec)
        self._memo_seed.assign(seed)
        self._memo_set.assign(True)

    def logits(self, x, seed):
        x_rec, _, mse = self.projector(x, seed)
        return self.classifier(x_rec, training=False), x_rec, mse

    def attack_model_fn(self, mode: str):
        """model_fn (x -> logits) whose gradient is what mode `mode` gives the attacker."""
        if mode == "classifier":
            return lambda x: self.classifier(x, training=False)
        if mode == "bpda":
            return self._bpda_logits
        raise ValueError(f"--gradient: unknown mode '{mode}' (expected one of "
                         f"{', '.join(GRADIENT_MODES)})")

    def _project_for_attack(self, x):
        """P(x) with attack_seed, from the memo when x and the seed are exactly the remembered
        ones."""
        if x.shape != self._memo_x.shape:
            return self.projector(x, self.attack_seed)[0]
        hit = tf.logical_and(
            self._memo_set,
            tf.logical_and(tf.reduce_all(tf.equal(self._memo_seed, self.attack_seed)),
                           tf.reduce_all(tf.equal(x, self._memo_x))))
        return tf.cond(hit, lambda: tf.identity(self._memo_rec),
                       lambda: self.projector(x, self.attack_seed)[0])

    def _bpda_logits(self, x):
        return defended_logits(self.classifier, x, self._project_for_attack(tf.stop_gradient(x)),
                               "bpda")


def defended_logits(classifier, x, x_rec, mode: str):
    """classifier(x_rec) on the forward pass (x_rec = P(x), float32 like x, held constant),
    with the gradient w.r.t. x that `mode` gives the attacker:
    - bpda: x + stop_gradient(P(x) - x) goes into the classifier, so the projection's backward
      pass is the identity: the classifier's gradient at P(x);
    - classifier: the undefended classifier's Jacobian at x (its logits are shifted by a
      constant to the defended ones); note the loss is then taken at the defended logits,
      whereas `attack_model_fn("classifier")` attacks the plain classifier's own loss.
    Returns logits float32 [N, K]."""
    x_rec = tf.stop_gradient(x_rec)
    if mode == "bpda":
        return classifier(x + tf.stop_gradient(x_rec - x), training=False)
    if mode == "classifier":
        logits = classifier(x, training=False)
        return logits + tf.stop_gradient(classifier(x_rec, training=False) - logits)
    raise ValueError(f"--gradient: unknown mode '{mode}' (expected one of "
                     f"{', '.join(GRADIENT_MODES)})")
