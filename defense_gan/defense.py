"""The defended classifier: classifier(G(z*(x))), and the gradient an attacker gets through it.

Gradient modes (`--gradient`), i.e. what `attack_model_fn` returns:
- `classifier`: the attacker differentiates the undefended classifier; the adversarial image
  is then passed through the defense. This is what the authors advised in the release's
  issue #1, and what the release's white-box numbers amount to at best.
- `bpda`: Backward Pass Differentiable Approximation (Athalye, Carlini, Wagner 2018): the
  forward pass is the full defense classifier(P(x)); the backward pass treats the projection P
  as the identity, so the gradient is grad_{x'} loss(classifier(x')) evaluated at x' = P(x).

- `bpda` with `eot_samples` K (BPDA + EOT, Athalye et al.): each call of the model draws K
  projections with fresh seeds and returns their logits [N, K, classes]; the attacks average
  the loss over the draws (`attacks.eot_loss`), so the gradient is the mean of K BPDA
  gradients. The seeds are (seed, -(1 + k * 2**16 + i)) for batch k and draw i: the second
  component is negative, and the defender's are never (its evaluation uses (seed, k) and
  (seed, k + FRESH_SEED_OFFSET)), so the attacker never sees the restarts it is judged by.
- `unrolled`: the exact gradient through all L projection steps (`Projector.unrolled`), the
  attack the release meant to run. Memory grows with L (`projection.unrolled_memory_bytes`).

The attack's projections may be cheaper than the defender's (`attack_projector`, from
--attack_rec_iters / --attack_rec_rr / --attack_precision); the evaluation always uses
`projector`.

In the release as shipped the gradient through the unrolled projection vanished, so FGSM
returned the unperturbed image (its issues #1, #14): its white-box Defense-GAN column is in
effect the accuracy on reconstructions of clean images (`defended_clean_accuracy` here).
"""

import tensorflow as tf

from defense_gan.rec_cache import reconstruct_batch

GRADIENT_MODES = ("classifier", "bpda", "unrolled")
EOT_DRAWS_PER_BATCH = 1 << 16  # seeds (draws) one batch's attack may use


class DefendedClassifier:
    """classifier o projection.

    classifier: x float32 [N, H, W, C] in [0, 1] -> logits float32 [N, K].
    projector: a `projection.Projector` (fixed batch size B).
    `logits(x, seed)` -> (logits [B, K], x_rec [B, H, W, C], mse [B]).
    """

    # The interface every defense object offers evaluation.evaluate (MagNet's too):
    score_name = "mse"  # what `logits` returns third: the per-pixel reconstruction MSE
    detects = False     # a detecting defense rejects inputs whose score is >= 1

    def __init__(self, classifier, projector, seed: int = 0, attack_projector=None,
                 eot_samples: int | None = None):
        """attack_projector: the projection inside the attack (default: `projector`), same
        batch size. eot_samples: None (BPDA with attack_seed) or K >= 1 (BPDA + EOT)."""
        self.classifier = classifier
        self.projector = projector
        self.attack_projector = attack_projector or projector
        if self.attack_projector.settings.batch_size != projector.settings.batch_size:
            raise ValueError("attack_projector must have the projector's batch size")
        if eot_samples is not None and eot_samples < 1:
            raise ValueError(f"--eot_samples: must be >= 1, got {eot_samples}")
        self.eot_samples = eot_samples
        # Seed of the projection inside the BPDA forward pass; set per batch by the caller.
        self.attack_seed = tf.Variable([seed, 0], dtype=tf.int32, trainable=False)
        self.draws = tf.Variable(0, dtype=tf.int32, trainable=False)  # EOT draws this batch
        # One known projection (see `remember`).
        shape = [projector.settings.batch_size, *projector.image_shape]
        self._memo_x = tf.Variable(tf.zeros(shape), trainable=False)
        self._memo_rec = tf.Variable(tf.zeros(shape), trainable=False)
        self._memo_seed = tf.Variable([0, 0], dtype=tf.int32, trainable=False)
        self._memo_set = tf.Variable(False, trainable=False)

    def set_attack_seed(self, seed_pair) -> None:
        """Start a batch: the known-seed BPDA projects with `seed_pair` (seed, k); EOT draws
        restart from (seed, -(1 + k * 2**16)), so a resumed run draws what an uninterrupted one
        would."""
        self.attack_seed.assign(seed_pair)
        self.draws.assign(0)

    def eot_seeds(self, count: int):
        """int32 [count, 2]: the next `count` EOT seeds of this batch (see the module doc)."""
        first = self.draws.assign_add(count) - count
        tf.debugging.assert_less_equal(first + count, EOT_DRAWS_PER_BATCH,
                                       message="EOT drew more seeds than a batch may use")
        offsets = 1 + self.attack_seed[1] * EOT_DRAWS_PER_BATCH + first + tf.range(count)
        return tf.stack([tf.fill([count], self.attack_seed[0]), -offsets], axis=1)

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

    def purify_clean(self, x, k: int, count: int, seed: int, cache=None):
        """Start batch k (x float32 [B, H, W, C], `count` real images): P(x) with seed
        [seed, k] from `cache` when it holds it, remembered for BPDA, and the attack's seed set
        to [seed, k]. Returns (x_rec numpy [B, H, W, C], mse numpy [B], computed: bool)."""
        self.set_attack_seed([seed, k])
        x_rec, mse, computed = reconstruct_batch(self.projector, cache, k, x, count, seed)
        self.remember(x, x_rec, [seed, k])  # BPDA at x reuses P(x)
        return x_rec, mse, computed

    def logits(self, x, seed):
        x_rec, _, mse = self.projector(x, seed)
        return self.classifier(x_rec, training=False), x_rec, mse

    def attack_model_fn(self, mode: str):
        """model_fn whose gradient is what mode `mode` gives the attacker: x -> logits
        [N, classes], or with eot_samples K (bpda only) x -> logits [N, K, classes]."""
        if mode == "classifier":
            return lambda x: self.classifier(x, training=False)
        if mode == "bpda":
            return self._bpda_logits if self.eot_samples is None else self._eot_logits
        if mode == "unrolled":
            return self._unrolled_logits
        raise ValueError(f"--gradient: unknown mode '{mode}' (expected one of "
                         f"{', '.join(GRADIENT_MODES)})")

    def _project_for_attack(self, x):
        """P(x) with attack_seed, from the memo when x and the seed are exactly the remembered
        ones (the memo holds the defender's projection: used only when the attack projects
        the same way)."""
        project = self.attack_projector
        if x.shape != self._memo_x.shape or project is not self.projector:
            return project(x, self.attack_seed)[0]
        hit = tf.logical_and(
            self._memo_set,
            tf.logical_and(tf.reduce_all(tf.equal(self._memo_seed, self.attack_seed)),
                           tf.reduce_all(tf.equal(x, self._memo_x))))
        return tf.cond(hit, lambda: tf.identity(self._memo_rec),
                       lambda: project(x, self.attack_seed)[0])

    def _bpda(self, x, x_rec):
        # x + stop_gradient(P(x) - x): forward value P(x), derivative the identity.
        return defended_logits(self.classifier, x, x_rec, "bpda")

    def _bpda_logits(self, x):
        return self._bpda(x, self._project_for_attack(tf.stop_gradient(x)))

    def _eot_logits(self, x):
        """[N, K, classes]: BPDA logits of K projections with fresh EOT seeds."""
        seeds = self.eot_seeds(self.eot_samples)
        x_const = tf.stop_gradient(x)
        draws = [self._bpda(x, self.attack_projector(x_const, seeds[i])[0])
                 for i in range(self.eot_samples)]
        return tf.stack(draws, axis=1)

    def _unrolled_logits(self, x):
        return self.classifier(self.attack_projector.unrolled(x, self.attack_seed),
                               training=False)

    def latent_start(self, x):
        """z0 float32 [N, latent_dim] of x for the latent-space attack: the attack projector's z*
        with a fresh EOT seed (the defender's restarts stay unknown)."""
        return self.attack_projector(x, self.eot_seeds(1)[0])[1]


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
