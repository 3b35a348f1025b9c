"""White-box attacks: thin wrappers over CleverHans 4.0.0 (TF2), plus a working CW-L2 and
Athalye et al.'s latent-space attack on Defense-GAN.

A `model_fn` is any callable: x float32 [N, H, W, C] in [0, 1] -> logits float32 [N, K]. It
may be a `tf.custom_gradient` function (e.g. Defense-GAN with a BPDA backward pass); attacks
only differentiate it inside a GradientTape, as CleverHans does.

EOT (expectation over transformation): a model_fn may instead return logits [N, K, 10], one
row per random draw of a randomised defense (K projections with different restarts). Every
attack then minimises the loss averaged over the K draws (`eot_loss`: the mean over draws of
the cross-entropy, whose gradient is the mean of the K BPDA gradients), and labels/predictions
use the mean logits. CleverHans' FGM/PGD take such a loss as `loss_fn`, so EOT needs no custom
attack loop.

Every attack casts its input to float32, checks it is in [0, 1] and returns a float32
tf.Tensor of the same shape, clipped to [0, 1]. Labels `y` are int class indices [N]; when `y`
is None the label is the model's prediction (CleverHans' default, as in the original release).

FGSM and PGD are CleverHans' `fast_gradient_method` / `projected_gradient_descent`. CleverHans'
TF2 gradient helper is a module-level tf.function keyed on the model_fn object and the input
shape, so wrap a model once (`make_attack`) and pass fixed-size batches to avoid retracing.

CW-L2 is our `CarliniWagnerL2` (CleverHans' algorithm; see its docstring for why CleverHans'
own TF2 class cannot be used with Keras 3).
"""

import contextlib
import importlib

import keras
import numpy as np
import tensorflow as tf

# The modules (not the same-named functions), so PGD's random start can be seeded.
_fgm_module = importlib.import_module("cleverhans.tf2.attacks.fast_gradient_method")
_pgd_module = importlib.import_module("cleverhans.tf2.attacks.projected_gradient_descent")

ATTACKS = ("fgsm", "rand_fgsm", "cw", "pgd", "latent")
PGD_NORMS = {"linf": np.inf, "l2": 2}
CLIP_MIN, CLIP_MAX = 0.0, 1.0

# Defaults of make_attack/describe: the flag defaults of config.py (the release's settings).
DEFAULTS = dict(eps=0.3, alpha=0.05, pgd_steps=40, cw_iters=100, cw_lr=10.0, cw_c=100.0, seed=0,
                pgd_norm="linf", pgd_step_size=None, pgd_restarts=1, pgd_eps_l2=1.98,
                latent_iters=500, latent_lr=0.05, latent_c=1.0, clip_min=CLIP_MIN,
                clip_max=CLIP_MAX, labels="predicted")
# `labels` of an attack: "predicted" (the model's prediction on the clean input unless the
# caller gives labels: CleverHans' default, the release's) or "true" (the caller must give
# the true labels; make_attack's callable has .true_labels so evaluation knows to).
LABELS = {"predicted": "model prediction unless given", "true": "true labels"}


# --- helpers ---------------------------------------------------------------------------------
def _images(x, clip_min: float = CLIP_MIN, clip_max: float = CLIP_MAX) -> tf.Tensor:
    """x (any real dtype, array or tensor) [N, H, W, C] in [clip_min, clip_max] -> float32
    tensor. Raises InvalidArgumentError if a value is outside (e.g. uint8 pixels not divided
    by 255)."""
    x = tf.cast(tf.convert_to_tensor(x), tf.float32)
    if x.shape.rank != 4:
        raise ValueError(f"attack input must be [N, H, W, C], got shape {x.shape}")
    tf.debugging.assert_greater_equal(x, clip_min, message=f"attack input below {clip_min}")
    tf.debugging.assert_less_equal(x, clip_max,
                                   message=f"attack input above {clip_max} (uint8 pixels?)")
    return x


def _labels(y):
    """None or int class indices [N] -> None or int64 tensor [N]."""
    return None if y is None else tf.cast(tf.convert_to_tensor(y), tf.int64)


def _seed_pair(seed) -> tf.Tensor:
    """int s -> [s, 0]; (a, b) -> [a, b]: the int64 [2] seed of TF's stateless RNG ops."""
    pair = (int(seed), 0) if np.ndim(seed) == 0 else tuple(int(s) for s in seed)
    if len(pair) != 2:
        raise ValueError(f"seed must be an int or a pair of ints, got {seed!r}")
    return tf.constant(pair, tf.int64)


def mean_logits(logits) -> tf.Tensor:
    """logits [N, K] or EOT logits [N, D, K] (D draws) -> [N, K] (the mean over draws)."""
    return tf.reduce_mean(logits, axis=1) if logits.shape.rank == 3 else logits


def eot_loss(labels, logits) -> tf.Tensor:
    """Per-example cross-entropy [N] of logits [N, K], or for EOT logits [N, D, K] its mean
    over the D draws (so its gradient is the mean of the draws' gradients). labels: int [N].
    CleverHans' `loss_fn` signature."""
    labels = tf.cast(labels, tf.int64)
    if logits.shape.rank == 3:
        draws = tf.shape(logits)[1]
        per_draw = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.repeat(labels[:, None], draws, axis=1), logits=logits)
        return tf.reduce_mean(per_draw, axis=1)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def predict(model_fn, x) -> tf.Tensor:
    """int64 [N]: argmax of model_fn(x)'s (mean) logits."""
    return tf.argmax(mean_logits(model_fn(x)), 1)


def _check_eps(eps: float, name: str = "eps", width: float = CLIP_MAX - CLIP_MIN) -> float:
    """eps in [0, width], width the size of the pixel range (1 for [0, 1], 2 for [-1, 1])."""
    eps = float(eps)
    if not 0.0 <= eps <= width:
        raise ValueError(f"{name} must be in [0, {width:g}] (the width of the pixel range), "
                         f"got {eps}")
    return eps


# --- L-inf attacks (CleverHans) ----------------------------------------------------------------
def fgsm(model_fn, x, eps: float, y=None, clip_min: float = CLIP_MIN,
         clip_max: float = CLIP_MAX) -> tf.Tensor:
    """FGSM, L-inf: clip(x + eps * sign(grad_x xent(model_fn(x), y)), clip_min, clip_max).
    Pixels are in [clip_min, clip_max] ([0, 1]; CelebA [-1, 1], eps in the same units, as the
    release), here and in every attack below.

    Args:
      model_fn: x float32 [N, H, W, C] in [0, 1] -> logits float32 [N, K].
      x: images [N, H, W, C] in [0, 1], any real dtype (cast to float32).
      eps: L-inf budget in [0, 1].
      y: None (use the model's predicted labels) or int class indices [N] in [0, K).
    Returns:
      float32 [N, H, W, C] in [0, 1], |x_adv - x|_inf <= eps.
    """
    eps = _check_eps(eps, width=clip_max - clip_min)
    x = _images(x, clip_min, clip_max)
    y = predict(model_fn, x) if y is None else _labels(y)
    return _fgm_module.fast_gradient_method(model_fn, x, eps, np.inf, loss_fn=eot_loss,
                                            clip_min=clip_min, clip_max=clip_max, y=y)


def rand_fgsm(model_fn, x, eps: float, alpha: float, seed, y=None, clip_min: float = CLIP_MIN,
              clip_max: float = CLIP_MAX) -> tf.Tensor:
    """RAND+FGSM as the original release: x' = clip(x + alpha * sign(N(0, 1)), 0, 1), then
    FGSM with budget eps - alpha from x' (labels: y, or the model's prediction on x').

    Args:
      model_fn: x float32 [N, H, W, C] in [0, 1] -> logits float32 [N, K].
      x: images [N, H, W, C] in [0, 1], any real dtype (cast to float32).
      eps: total L-inf budget in [0, 1].
      alpha: random step in [0, eps].
      seed: int or pair of ints for the stateless RNG; the same seed gives the same output.
        Vary it between batches (make_attack does) or every batch gets the same noise.
      y: None (model's predicted labels) or int class indices [N] in [0, K).
    Returns:
      float32 [N, H, W, C] in [0, 1], |x_adv - x|_inf <= eps.
    """
    width = clip_max - clip_min
    eps, alpha = _check_eps(eps, width=width), _check_eps(alpha, "alpha", width)
    if alpha > eps:
        raise ValueError(f"alpha ({alpha}) must not exceed eps ({eps})")
    x = _images(x, clip_min, clip_max)
    noise = tf.random.stateless_normal(tf.shape(x), seed=_seed_pair(seed), dtype=tf.float32)
    x_rand = tf.clip_by_value(x + alpha * tf.sign(noise), clip_min, clip_max)
    return fgsm(model_fn, x_rand, eps - alpha, y=y, clip_min=clip_min, clip_max=clip_max)


def _stateless_lp_vector(seed):
    """A stand-in for CleverHans' `random_lp_vector` (global RNG) drawing the same random start
    from a stateless RNG: L-inf uniform in [-eps, eps]; L2 uniform in the eps-ball (a normal
    direction scaled by eps * U^(1/d), Calafiore et al. 1998, as CleverHans)."""
    def random_lp_vector(shape, ord, eps, dtype=tf.float32, seed_=None):  # noqa: A002
        if ord == np.inf:
            return tf.random.stateless_uniform(shape, seed=seed, minval=-eps, maxval=eps,
                                               dtype=dtype)
        if ord != 2:
            raise ValueError("only the L-inf and L2 random starts are supported")
        dim = tf.reduce_prod(shape[1:])
        direction = tf.random.stateless_normal((shape[0], dim), seed=seed, dtype=dtype)
        direction /= tf.norm(direction, axis=1, keepdims=True)
        radius = tf.random.stateless_uniform((shape[0], 1), seed=seed + [0, 1], dtype=dtype)
        radius = radius ** (1.0 / tf.cast(dim, dtype))
        return tf.reshape(eps * radius * direction, shape)
    return random_lp_vector


@contextlib.contextmanager
def _seeded_pgd_start(seed):
    """Make CleverHans' PGD draw its random start from the stateless RNG seeded by `seed`
    (CleverHans 4.0.0 offers no seed argument; it calls the module-level `random_lp_vector`).
    """
    original = _pgd_module.random_lp_vector
    _pgd_module.random_lp_vector = _stateless_lp_vector(_seed_pair(seed))
    try:
        yield
    finally:
        _pgd_module.random_lp_vector = original


def pgd(model_fn, x, eps: float, eps_iter: float, nb_iter: int, seed, y=None,
        rand_init: bool = True, norm: str = "linf", restarts: int = 1,
        clip_min: float = CLIP_MIN, clip_max: float = CLIP_MAX) -> tf.Tensor:
    """PGD (Madry et al.), L-inf or L2, CleverHans' `projected_gradient_descent`, with random
    restarts.

    Args:
      model_fn: x float32 [N, H, W, C] in [0, 1] -> logits float32 [N, K], or EOT logits
        [N, D, K] (the loss is then averaged over the D draws, see `eot_loss`).
      x: images [N, H, W, C] in [0, 1], any real dtype (cast to float32).
      eps: budget: L-inf in [0, 1], or L2 >= 0 (pixels in [0, 1]; at most sqrt(H*W*C)).
      eps_iter: step size in (0, eps] (L-inf: per pixel; L2: length of each step).
      nb_iter: number of steps, >= 1.
      seed: int or pair of ints; restart r draws its random start (uniform in the eps-ball)
        from the stateless RNG seeded by (seed[0], seed[1] + r * 2**16), so the same seed
        gives the same output.
      y: None (model's predicted labels on x) or int class indices [N] in [0, K).
      rand_init: start from a uniform random point of the eps-ball (True) or from x (BIM).
      norm: "linf" or "l2".
      clip_min, clip_max: the pixel range ([0, 1]; CelebA [-1, 1]); eps in its units.
      restarts: independent runs >= 1; per image the run with the highest loss of model_fn
        at its end is kept (the worst case for the defense). Each restart costs a full PGD.
    Returns:
      float32 [N, H, W, C] in [0, 1], ||x_adv - x|| <= eps in the chosen norm.
    """
    if norm not in PGD_NORMS:
        raise ValueError(f"norm must be one of {', '.join(PGD_NORMS)}, got {norm!r}")
    eps = _check_eps(eps, width=clip_max - clip_min) if norm == "linf" else float(eps)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    x = _images(x, clip_min, clip_max)
    if eps == 0.0:
        return x
    if not 0.0 < eps_iter <= eps:
        raise ValueError(f"eps_iter must be in (0, eps={eps}], got {eps_iter}")
    if int(nb_iter) < 1 or int(restarts) < 1:
        raise ValueError(f"nb_iter and restarts must be >= 1, got {nb_iter}, {restarts}")
    y = predict(model_fn, x) if y is None else _labels(y)
    base = _seed_pair(seed)
    best, best_loss = None, None
    for r in range(int(restarts)):
        with _seeded_pgd_start(base + tf.constant([0, r * (1 << 16)], tf.int64)):
            x_adv = _pgd_module.projected_gradient_descent(
                model_fn, x, eps, float(eps_iter), int(nb_iter), PGD_NORMS[norm],
                loss_fn=eot_loss, clip_min=clip_min, clip_max=clip_max, y=y,
                rand_init=rand_init)
        if restarts == 1:
            return x_adv
        loss = eot_loss(y, model_fn(x_adv))
        if best is None:
            best, best_loss = x_adv, loss
        else:
            better = loss > best_loss
            best = tf.where(better[:, None, None, None], x_adv, best)
            best_loss = tf.where(better, loss, best_loss)
    return best


# --- Carlini-Wagner L2 -------------------------------------------------------------------------
def _margin_loss(labels, logits, confidence: float = 0.0) -> tf.Tensor:
    """CW's f6 per example [N]: max(0, Z_y - max_{j != y} Z_j + confidence) for logits [N, K];
    for EOT logits [N, D, K] the mean of f6 over the D draws. labels: int [N]."""
    eot = logits.shape.rank == 3
    if eot:
        labels = tf.repeat(labels[:, None], tf.shape(logits)[1], axis=1)
    onehot = tf.one_hot(labels, tf.shape(logits)[-1], dtype=logits.dtype)
    real = tf.reduce_sum(onehot * logits, -1)
    other = tf.reduce_max((1.0 - onehot) * logits - onehot * 10_000.0, -1)
    f6 = tf.maximum(0.0, real - other + confidence)
    return tf.reduce_mean(f6, axis=1) if eot else f6


class CarliniWagnerL2:
    """Untargeted Carlini-Wagner L2, following CleverHans' algorithm (v2 semantics).

    Why not `cleverhans.tf2.attacks.carlini_wagner_l2`: with Keras 3 it fails at
    `self.optimizer.variables()` (now a list property, not a method). The obvious patch,
    zeroing every `optimizer.variables` entry between binary-search steps, also zeroes Adam's
    `learning_rate` variable, so the modifier never moves and the "attack" returns x. That class
    also has a `const` of image shape (broadcast wrongly against the per-example loss), treats
    any given `y` as a *target*, and adds `confidence` to every logit (a no-op).

    Here: tanh change of variables x_new = (tanh(w + atanh(2x - 1)) + 1) / 2 (scaled to
    [clip_min, clip_max]); Adam on the modifier w; loss = sum_i ||x_new_i - x_i||^2 +
    c_i * max(0, Z_y - max_{j != y} Z_j + confidence); per-example binary search on c; keep, per
    input, the adversarial x_new with the smallest L2 over all steps. Between binary-search
    steps only Adam's slots and iteration counter are reset (`reset_optimizer`), never its
    learning rate. The inner loop is one tf.function at a fixed batch shape, built once on the
    first call: later calls are padded (or split) to that batch size and never retrace.

    Inputs where no adversarial example is found are returned unchanged (CleverHans
    semantics), so "changed" == "found adversarial" per example.
    """

    def __init__(self, model_fn, *, batch_size: int | None = None, confidence: float = 0.0,
                 learning_rate: float = 10.0, binary_search_steps: int = 1,
                 max_iterations: int = 100, initial_const: float = 100.0,
                 clip_min: float = CLIP_MIN, clip_max: float = CLIP_MAX,
                 abort_early: bool = True):
        """Args (defaults are the release's settings):
          model_fn: x float32 [N, H, W, C] in [clip_min, clip_max] -> logits float32 [N, K].
          batch_size: examples attacked at once, >= 1; None = the size of the first batch.
          confidence: kappa >= 0, the logit margin required (0 in the release).
          learning_rate: Adam learning rate > 0 (10 in the release).
          binary_search_steps: steps of the binary search on c, >= 1 (1 in the release).
          max_iterations: Adam steps per binary-search step, >= 1 (100 in the release).
          initial_const: initial c > 0 (100 in the release).
          clip_min, clip_max: pixel range, clip_min < clip_max ([0, 1]).
          abort_early: stop a search step when the loss has not dropped by 0.01% over the last
            max_iterations // 10 steps (CleverHans' default True, which the release kept).
            Not applied to an EOT model (logits [N, D, K]), whose loss is a noisy estimate.
        """
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not learning_rate > 0 or not initial_const > 0 or confidence < 0:
            raise ValueError("learning_rate and initial_const must be > 0, confidence >= 0")
        if int(binary_search_steps) < 1 or int(max_iterations) < 1:
            raise ValueError("binary_search_steps and max_iterations must be >= 1")
        if not clip_min < clip_max:
            raise ValueError(f"clip_min ({clip_min}) must be < clip_max ({clip_max})")
        self.model_fn = model_fn
        self.batch_size = None if batch_size is None else int(batch_size)
        self.confidence = float(confidence)
        self.learning_rate = float(learning_rate)
        self.binary_search_steps = int(binary_search_steps)
        self.max_iterations = int(max_iterations)
        self.initial_const = float(initial_const)
        self.clip_min, self.clip_max = float(clip_min), float(clip_max)
        self.abort_early = bool(abort_early)
        self.optimizer = keras.optimizers.Adam(self.learning_rate)
        self._modifier = None
        self._search = None
        self._image_shape = None

    # -- building ------------------------------------------------------------------------------
    def _build(self, image_shape) -> None:
        """Create the modifier [B, H, W, C], Adam's slots and the compiled search step."""
        self._image_shape = tuple(image_shape)
        shape = (self.batch_size, *self._image_shape)
        self._modifier = tf.Variable(tf.zeros(shape), trainable=True, name="cw_modifier")
        self.optimizer.build([self._modifier])
        images = tf.TensorSpec(shape, tf.float32)
        vec = tf.TensorSpec((self.batch_size,), tf.float32)
        ints = tf.TensorSpec((self.batch_size,), tf.int32)
        self._search = tf.function(
            self._search_step, input_signature=[images, images, ints, vec, vec, vec, ints, images])

    def reset_optimizer(self) -> None:
        """Zero Adam's iteration counter and moment slots, as CleverHans v2 re-initialised
        its optimizer per binary-search step. The learning rate is left untouched."""
        lr = self.optimizer.learning_rate  # Itself one of `optimizer.variables` in Keras 3.
        for var in self.optimizer.variables:
            if var is not lr:
                var.assign(tf.zeros(var.shape, var.dtype))

    def _to_pixels(self, w):
        """tanh space -> pixels in [clip_min, clip_max]."""
        return (tf.tanh(w) + 1.0) / 2.0 * (self.clip_max - self.clip_min) + self.clip_min

    # -- one binary-search step, compiled --------------------------------------------------------
    def _search_step(self, timg, x_orig, labels, const, weight, o_best_l2, o_best_score,
                     o_best_attack):
        """max_iterations Adam steps from modifier 0 at constants `const` [B].

        timg: the inputs in tanh space; x_orig: the inputs as pixels; labels int32 [B];
        weight [B]: 1 for real examples, 0 for batch padding. The o_best_* are the overall
        best L2 [B], predicted class [B] (-1: none yet) and image, updated and returned
        with this step's best class [B] (-1 if this step found no adversarial example).
        """
        self._modifier.assign(tf.zeros_like(self._modifier))
        x_ref = self._to_pixels(timg)  # What x_new is at modifier 0 (== x up to atanh clipping).
        best_l2 = tf.fill(tf.shape(const), 1e10)
        best_score = tf.fill(tf.shape(labels), -1)
        prev = tf.constant(np.inf, tf.float32)  # CleverHans used 1e6, too small for big c.
        check_every = (self.max_iterations // 10) or 1
        for it in tf.range(self.max_iterations):
            with tf.GradientTape() as tape:
                x_new = self._to_pixels(self._modifier + timg)
                draws = tf.cast(self.model_fn(x_new), tf.float32)
                f6 = _margin_loss(labels, draws, self.confidence)
                logits = mean_logits(draws)  # EOT: success judged on the mean logits
                onehot = tf.one_hot(labels, tf.shape(logits)[-1], dtype=tf.float32)
                l2 = tf.reduce_sum(tf.square(x_new - x_ref), axis=[1, 2, 3])
                loss = tf.reduce_sum(weight * (l2 + const * f6))
            grad = tape.gradient(loss, self._modifier)
            self.optimizer.apply_gradients([(grad, self._modifier)])
            # Under EOT (rank-3 draws) each step's loss is a fresh random estimate, so a
            # stalled-loss test would stop on noise: the search then runs every iteration.
            if self.abort_early and draws.shape.rank == 2 and it % check_every == 0:
                if loss > prev * 0.9999:
                    break
                prev = loss
            # An example counts as adversarial if the true class, raised by kappa, is not top.
            pred = tf.cast(tf.argmax(logits, 1), tf.int32)
            pred_conf = tf.cast(tf.argmax(logits + self.confidence * onehot, 1), tf.int32)
            success = tf.not_equal(pred_conf, labels)
            better = tf.logical_and(success, l2 < best_l2)
            best_l2 = tf.where(better, l2, best_l2)
            best_score = tf.where(better, pred, best_score)
            better = tf.logical_and(success, l2 < o_best_l2)
            o_best_l2 = tf.where(better, l2, o_best_l2)
            o_best_score = tf.where(better, pred, o_best_score)
            o_best_attack = tf.where(better[:, None, None, None], x_new, o_best_attack)
        return best_score, o_best_l2, o_best_score, o_best_attack

    # -- attacking -----------------------------------------------------------------------------
    def _attack_batch(self, x, y, n_valid):
        """x float32 [B, H, W, C] (rows >= n_valid are padding), y int32 [B] -> x_adv [B, ...]."""
        b = self.batch_size
        weight = tf.constant([1.0] * n_valid + [0.0] * (b - n_valid), tf.float32)
        scaled = (x - self.clip_min) / (self.clip_max - self.clip_min)
        timg = tf.atanh((tf.clip_by_value(scaled, 0.0, 1.0) * 2.0 - 1.0) * 0.999999)
        lower, upper = np.zeros(b, np.float32), np.full(b, 1e10, np.float32)
        const = np.full(b, self.initial_const, np.float32)
        o_best_l2, o_best_score = tf.fill([b], 1e10), tf.fill([b], -1)
        o_best_attack = x
        labels = y.numpy()
        for _ in range(self.binary_search_steps):
            self.reset_optimizer()
            best_score, o_best_l2, o_best_score, o_best_attack = self._search(
                timg, x, y, tf.constant(const), weight, o_best_l2, o_best_score, o_best_attack)
            # CleverHans v2's per-example binary search on c, from this step's result.
            score = best_score.numpy()
            found = (score != labels) & (score != -1)
            upper = np.where(found, np.minimum(upper, const), upper)
            lower = np.where(found, lower, np.maximum(lower, const))
            const = np.where(upper < 1e9, (lower + upper) / 2.0,
                             np.where(found, const, const * 10.0)).astype(np.float32)
        return tf.clip_by_value(o_best_attack, self.clip_min, self.clip_max)

    def __call__(self, x, y=None) -> tf.Tensor:
        """x [N, H, W, C] in [clip_min, clip_max] (any real dtype), y None (the model's
        predictions) or int class indices [N] -> x_adv float32 [N, H, W, C] in
        [clip_min, clip_max]; rows without an adversarial example are x itself."""
        x = tf.cast(tf.convert_to_tensor(x), tf.float32)
        if x.shape.rank != 4:
            raise ValueError(f"attack input must be [N, H, W, C], got shape {x.shape}")
        tf.debugging.assert_greater_equal(x, self.clip_min, message="CW input below clip_min")
        tf.debugging.assert_less_equal(x, self.clip_max, message="CW input above clip_max")
        n = int(x.shape[0])
        if self._search is None:
            self.batch_size = self.batch_size or n
            self._build(x.shape[1:])
        elif tuple(x.shape[1:]) != self._image_shape:
            raise ValueError(f"this attack was built for images {self._image_shape}, "
                             f"got {tuple(x.shape[1:])}")
        y = None if y is None else tf.cast(tf.convert_to_tensor(y), tf.int32)
        b, out = self.batch_size, []
        for start in range(0, n, b):
            chunk = x[start:start + b]
            k = int(chunk.shape[0])
            if k < b:
                chunk = tf.concat([chunk, tf.zeros((b - k, *self._image_shape))], 0)
            if y is None:
                labels = tf.cast(predict(self.model_fn, chunk), tf.int32)
            else:
                labels = tf.concat([y[start:start + k], tf.zeros([b - k], tf.int32)], 0)
            out.append(self._attack_batch(chunk, labels, k)[:k])
        return tf.concat(out, 0)


def carlini_wagner_l2(model_fn, x, y=None, batch_size: int | None = None,
                      confidence: float = 0.0, learning_rate: float = 10.0,
                      binary_search_steps: int = 1, max_iterations: int = 100,
                      initial_const: float = 100.0, clip_min: float = CLIP_MIN,
                      clip_max: float = CLIP_MAX, abort_early: bool = True) -> tf.Tensor:
    """Untargeted CW-L2 of x, one-shot (builds and compiles a `CarliniWagnerL2`; to attack
    many batches, make one `CarliniWagnerL2` and call it, so it compiles once).

    Args: as `CarliniWagnerL2` (defaults are the release's settings), and
      x: images [N, H, W, C] in [clip_min, clip_max], any real dtype (cast to float32).
      y: None (the model's predicted labels) or int class indices [N] (true labels; the
        attack is untargeted either way).
    Returns:
      float32 [N, H, W, C] in [clip_min, clip_max]. Inputs for which no adversarial example
      was found are returned unchanged (CleverHans semantics).
    """
    attack = CarliniWagnerL2(model_fn, batch_size=batch_size, confidence=confidence,
                             learning_rate=learning_rate,
                             binary_search_steps=binary_search_steps,
                             max_iterations=max_iterations, initial_const=initial_const,
                             clip_min=clip_min, clip_max=clip_max, abort_early=abort_early)
    return attack(x, y)


# --- latent-space attack (Athalye et al. 2018, on Defense-GAN) -----------------------------------
class LatentAttack:
    """Search the generator's range for an adversarial image close to x (Athalye, Carlini,
    Wagner 2018, Sec. 5 on Defense-GAN): minimise over z

        ||G(z) - x||^2 + c * max(0, Z_y(G(z)) - max_{j != y} Z_j(G(z)))

    (CW's margin on the classifier's logits Z), with Adam on z from z0 (x's projection).
    If the projection were exact, P(G(z)) = G(z) and the defense would pass the
    misclassified G(z) unchanged; in practice the defender's own projection of G(z) from fresh
    restarts may land elsewhere, which the evaluation measures. Their attack ran 3,000 + 30,000
    steps with a binary search on c on a GPU; here `iters` Adam steps at one c.

    Per image the adversarial G(z) (classifier(G(z)) != y) with the smallest L2 to x over all
    steps is returned; images where none was found are returned unchanged (CW semantics), so
    `l2 > 0` == found.
    """

    def __init__(self, generator, classifier, *, iters: int = 500, lr: float = 0.05,
                 c: float = 1.0, clip_min: float = CLIP_MIN, clip_max: float = CLIP_MAX):
        """generator: z float32 [N, latent_dim] -> images in [clip_min, clip_max] (the data
        set's pixel range: [0, 1], CelebA [-1, 1]); classifier: images -> logits [N, K];
        iters >= 1 Adam steps with learning rate lr > 0; c > 0."""
        if int(iters) < 1 or not lr > 0 or not c > 0:
            raise ValueError("iters must be >= 1, lr and c > 0")
        self.clip_min, self.clip_max = float(clip_min), float(clip_max)
        self.generator, self.classifier = generator, classifier
        self.iters, self.lr, self.c = int(iters), float(lr), float(c)
        self.optimizer = keras.optimizers.Adam(self.lr)
        self._z = None
        self._run = None

    def _build(self, z0):
        self._z = tf.Variable(tf.zeros_like(z0), trainable=True, name="latent_z")
        self.optimizer.build([self._z])
        self._run = tf.function(self._search)

    def _search(self, x, z0, labels):
        self._z.assign(z0)
        for var in self.optimizer.variables:  # fresh Adam state, learning rate kept
            if var is not self.optimizer.learning_rate:
                var.assign(tf.zeros(var.shape, var.dtype))
        n = tf.shape(x)[0]
        best_l2 = tf.fill([n], np.inf)
        best = x
        for _ in tf.range(self.iters):
            with tf.GradientTape() as tape:
                image = self.generator(self._z, training=False)
                logits = self.classifier(image, training=False)
                dist = tf.reduce_sum(tf.square(image - x), axis=[1, 2, 3])
                loss = tf.reduce_sum(dist + self.c * _margin_loss(labels, logits))
            self.optimizer.apply_gradients([(tape.gradient(loss, self._z), self._z)])
            fooled = tf.not_equal(tf.argmax(logits, 1, output_type=tf.int32), labels)
            better = tf.logical_and(fooled, dist < best_l2)
            best_l2 = tf.where(better, dist, best_l2)
            best = tf.where(better[:, None, None, None], image, best)
        return best

    def __call__(self, x, z0, y=None) -> tf.Tensor:
        """x [N, H, W, C] in [clip_min, clip_max]; z0 float32 [N, latent_dim] (fixed N: traced
        once); y None (the classifier's prediction on G(z0)) or int [N] -> float32
        [N, H, W, C]."""
        x = _images(x, self.clip_min, self.clip_max)
        z0 = tf.cast(tf.convert_to_tensor(z0), tf.float32)
        if self._run is None:
            self._build(z0)
        if y is None:
            y = tf.argmax(self.classifier(self.generator(z0, training=False), training=False), 1)
        return tf.clip_by_value(self._run(x, z0, tf.cast(y, tf.int32)), self.clip_min,
                                self.clip_max)


# --- by name ---------------------------------------------------------------------------------
def _settings(name: str, settings: dict) -> dict:
    if name not in ATTACKS:
        raise ValueError(f"unknown attack '{name}' (expected one of {', '.join(ATTACKS)})")
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown attack settings {sorted(unknown)} "
                         f"(expected some of {sorted(DEFAULTS)})")
    return {**DEFAULTS, **settings}


def pgd_eps_iter(eps: float, pgd_steps: int) -> float:
    """PGD step size: 2.5 * eps / pgd_steps (Madry et al.), capped at eps."""
    return min(float(eps), 2.5 * float(eps) / int(pgd_steps))


def pgd_budget(settings: dict) -> float:
    """The PGD budget of make_attack settings: eps (L-inf) or pgd_eps_l2 (L2)."""
    return float(settings["eps"] if settings["pgd_norm"] == "linf" else settings["pgd_eps_l2"])


def describe(name: str, **settings) -> dict:
    """The settings of attack `name` as a plain JSON-able dict for results files.

    `settings` are make_attack's keywords (eps, alpha, pgd_steps, pgd_norm, pgd_step_size,
    pgd_restarts, pgd_eps_l2, cw_iters, cw_lr, cw_c, latent_iters, latent_lr, latent_c, seed);
    missing ones take DEFAULTS. Only the settings the attack uses are listed, plus derived
    ones (e.g. PGD's eps_iter). Unknown name or keyword -> ValueError.
    """
    s = _settings(name, settings)
    if s["labels"] not in LABELS:
        raise ValueError(f"--attack_labels: one of {', '.join(LABELS)}, got '{s['labels']}'")
    out = {"attack": name, "clip_min": float(s["clip_min"]), "clip_max": float(s["clip_max"]),
           "labels": LABELS[s["labels"]]}
    if name == "fgsm":
        out.update(norm="linf", eps=float(s["eps"]), implementation="cleverhans.tf2 FGM")
    elif name == "rand_fgsm":
        out.update(norm="linf", eps=float(s["eps"]), alpha=float(s["alpha"]),
                   fgsm_eps=float(s["eps"]) - float(s["alpha"]), seed=s["seed"],
                   implementation="sign(N(0,1)) step + cleverhans.tf2 FGM")
    elif name == "pgd":
        budget = pgd_budget(s)
        step = (pgd_eps_iter(budget, s["pgd_steps"]) if s["pgd_step_size"] is None
                else float(s["pgd_step_size"]))
        out.update(norm=s["pgd_norm"], eps=budget, eps_iter=step,
                   nb_iter=int(s["pgd_steps"]), restarts=int(s["pgd_restarts"]),
                   rand_init=True, seed=s["seed"],
                   implementation="cleverhans.tf2 PGD (worst of the restarts per image)")
    elif name == "latent":
        out.update(norm="l2 (unbounded; reported)", iterations=int(s["latent_iters"]),
                   learning_rate=float(s["latent_lr"]), c=float(s["latent_c"]),
                   implementation="defense_gan.attacks.LatentAttack (Athalye et al. 2018)")
    else:
        out.update(norm="l2", max_iterations=int(s["cw_iters"]),
                   learning_rate=float(s["cw_lr"]), initial_const=float(s["cw_c"]),
                   binary_search_steps=1, confidence=0.0, abort_early=True,
                   implementation="defense_gan.attacks.CarliniWagnerL2 (CleverHans algorithm)")
    return out


def make_attack(name: str, model_fn, *, latent=None, **settings):
    """Attack `name` on `model_fn` as a callable (x, y=None, batch=None) -> x_adv float32 in
    [clip_min, clip_max] (the data set's pixel range: [0, 1], CelebA [-1, 1]).

    Args:
      name: one of ATTACKS; else ValueError.
      model_fn: x float32 [N, H, W, C] in [0, 1] -> logits float32 [N, K] (or EOT logits
        [N, D, K]); wrapped once here, so gradient functions compile once per batch shape:
        pass fixed-size batches.
      latent: for "latent" only, (LatentAttack, z_start) where z_start(x) -> z0 [N, latent].
      settings (DEFAULTS for missing ones):
        eps: L-inf budget in [0, 1] (fgsm, rand_fgsm, pgd with pgd_norm="linf").
        alpha: RAND+FGSM random step in [0, eps].
        pgd_steps >= 1; pgd_norm "linf" | "l2"; pgd_eps_l2 >= 0 (the L2 budget);
        pgd_step_size: None (2.5 * budget / pgd_steps) or in (0, budget];
        pgd_restarts >= 1 (the worst case per image is kept).
        cw_iters, cw_lr, cw_c: CW-L2 iterations >= 1, Adam learning rate > 0, initial
          constant > 0 (1 binary-search step, confidence 0, as the release).
        latent_iters, latent_lr, latent_c: recorded for "latent" (the LatentAttack has them).
        seed: int. rand_fgsm / pgd called with batch=k use the stateless seed (seed, k), so
          batch k's noise does not depend on which batches the process ran before (a resumed
          or sharded run draws what a one-process run draws); called without batch, the k-th
          call (k = 0, 1, ...) uses (seed, k).
        labels: "predicted" (default) or "true": the callable's .true_labels says whether
          the caller must pass y (the true labels).
        clip_min, clip_max: the pixel range; eps and alpha are in its units.
    The callable has `.settings`, the `describe` dict of this attack.
    """
    s = _settings(name, settings)
    described = describe(name, **s)
    seed = int(s["seed"])
    clip = dict(clip_min=float(s["clip_min"]), clip_max=float(s["clip_max"]))
    width = clip["clip_max"] - clip["clip_min"]
    calls = [0]

    def next_seed(batch):
        calls[0] += 1
        return (seed, calls[0] - 1 if batch is None else int(batch))

    if name == "fgsm":
        eps = _check_eps(s["eps"], width=width)

        def attack(x, y=None, batch=None):
            return fgsm(model_fn, x, eps, y=y, **clip)
    elif name == "rand_fgsm":
        eps, alpha = _check_eps(s["eps"], width=width), float(s["alpha"])
        if not 0.0 <= alpha <= eps:
            raise ValueError(f"alpha must be in [0, eps={eps}], got {alpha}")

        def attack(x, y=None, batch=None):
            return rand_fgsm(model_fn, x, eps, alpha, next_seed(batch), y=y, **clip)
    elif name == "pgd":
        if int(s["pgd_steps"]) < 1 or int(s["pgd_restarts"]) < 1:
            raise ValueError("pgd_steps and pgd_restarts must be >= 1")
        if s["pgd_norm"] == "linf":
            _check_eps(s["eps"], width=width)
        budget, step = described["eps"], described["eps_iter"]

        def attack(x, y=None, batch=None):
            return pgd(model_fn, x, budget, step, int(s["pgd_steps"]), next_seed(batch), y=y,
                       norm=s["pgd_norm"], restarts=int(s["pgd_restarts"]), **clip)
    elif name == "latent":
        if latent is None:
            raise ValueError("the latent attack needs latent=(LatentAttack, z_start)")
        search, z_start = latent

        def attack(x, y=None, batch=None):
            return search(x, z_start(x), y)
    else:
        cw = CarliniWagnerL2(model_fn, learning_rate=s["cw_lr"], max_iterations=s["cw_iters"],
                             initial_const=s["cw_c"], binary_search_steps=1, confidence=0.0,
                             **clip)

        def attack(x, y=None, batch=None):
            return cw(x, y)
        attack.cw = cw

    attack.settings = described
    attack.true_labels = s["labels"] == "true"
    return attack
