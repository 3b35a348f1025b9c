"""The Defense-GAN projection: x -> G(z*), z* = argmin_z ||G(z) - x||^2 by R restarts of L
gradient-descent steps, as in the authors' release:

- each image is tiled R times; z starts from N(0, 1/latent_dim) (std 1/sqrt(latent_dim));
- loss per restart: mean squared error over pixels; the batch loss is the sum over restarts,
  so each restart follows its own MSE gradient;
- momentum 0.7, learning rate `rec_lr` (10.0), L steps, constant rate (the release's decay
  never fired); z is not clipped;
- the best restart is the one with the lowest MSE at the end; the output is its G(z).

Optional early stop (`rec_prune_at` > 0, off by default so the faithful setting is the
default): after round(rec_prune_at * L) steps only the `rec_keep` restarts of each image with
the lowest MSE go on (with their momentum) for the remaining steps, in a second while_loop on
the gathered survivors (static shapes). Restarts do not interact (the loss is a sum), so the
result equals the full projection whenever the final winner is among the survivors.

Precision: a generator built with precision="bfloat16" (Keras mixed_bfloat16 policy) computes
in bfloat16, but z, the momentum, the MSE and the restart choice stay float32 (the generator
returns float32 images).

The whole L loop runs inside one `tf.function` with a fixed input signature, so it traces once
per batch shape. Randomness is stateless: restarts of a batch depend only on the `seed` passed
in, so a result can be recomputed exactly.
"""

import dataclasses

import numpy as np
import tensorflow as tf

# --gradient=unrolled keeps, per restart and projection step, the generator's activations of the
# forward pass, of the inner backward pass (the gradient on z) and what the outer backward
# pass needs of both: UNROLLED_BYTES_PER_ELEMENT bytes per generator activation element
# (float32): benchmarks/unrolled_memory.py measured 11.6 (peak RSS at L = 5, 10, 20 with 10
# images x R=5, linear fit; benchmarks/results/unrolled_memory.json), rounded up.
UNROLLED_BYTES_PER_ELEMENT = 12.0


def pad_batch(x, size):
    """Pad a batch of n <= size images to `size` by repeating the last one (fixed shapes).

    x: np.ndarray -> np.ndarray; a tf.Tensor (also inside a tf.function, where n and `size`
    may be tensors) -> tf.Tensor. n == 0 needs size == 0.
    """
    if isinstance(x, np.ndarray):
        pad = size - len(x)
        return np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) if pad else x
    return tf.gather(x, tf.minimum(tf.range(size), tf.shape(x)[0] - 1))


@dataclasses.dataclass(frozen=True)
class ProjectionSettings:
    rec_iters: int = 200   # L
    rec_rr: int = 10       # R
    rec_lr: float = 10.0
    momentum: float = 0.7
    batch_size: int = 50   # images per call (fixed: the function traces once)
    rec_prune_at: float = 0.0  # early stop: fraction of L after which restarts are pruned (0: off)
    rec_keep: int = 2          # restarts per image kept after the prune

    def validate(self):
        for name in ("rec_iters", "rec_rr", "batch_size", "rec_keep"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.rec_prune_at < 1.0:
            raise ValueError(f"--rec_prune_at must be in [0, 1) (0: off), got {self.rec_prune_at}")
        if self.pruning and self.rec_keep >= self.rec_rr:
            raise ValueError(f"--rec_keep ({self.rec_keep}) must be smaller than --rec_rr "
                             f"({self.rec_rr}) when --rec_prune_at > 0, or nothing is pruned")
        return self

    @property
    def pruning(self) -> bool:
        return self.rec_prune_at > 0.0

    def prune_step(self) -> int:
        """Steps run on all restarts before the prune (rec_iters when pruning is off)."""
        if not self.pruning:
            return self.rec_iters
        return min(max(int(round(self.rec_prune_at * self.rec_iters)), 1), self.rec_iters)

    def cache_key(self) -> dict:
        """The settings that determine the result; the pruning fields only when pruning is on,
        so keys (and caches) of the faithful setting are unchanged."""
        key = dataclasses.asdict(self)
        if not self.pruning:
            del key["rec_prune_at"], key["rec_keep"]
        return key


def generator_activation_elements(generator, image_shape) -> int:
    """Activation elements of one forward pass of the release's generator for one latent
    vector (the Linear, ConvT, crop and output tensors; networks.Generator with width `dim`)."""
    dim = int(getattr(generator, "dim", 64))
    return 64 * dim + 128 * dim + 98 * dim + 196 * dim + int(np.prod(image_shape))


def unrolled_memory_bytes(generator, image_shape, batch_size: int, restarts: int,
                          steps: int) -> float:
    """Estimated peak memory of differentiating through `steps` projection steps of
    batch_size x restarts latent vectors (--gradient=unrolled): linear in each factor."""
    return (UNROLLED_BYTES_PER_ELEMENT * generator_activation_elements(generator, image_shape)
            * batch_size * restarts * steps)


def largest_unrolled_steps(generator, image_shape, batch_size: int, restarts: int,
                           budget_gib: float) -> int:
    """The largest L whose unrolled estimate fits in budget_gib GiB (0 if none)."""
    per_step = unrolled_memory_bytes(generator, image_shape, batch_size, restarts, 1)
    return int(budget_gib * 2 ** 30 // per_step)


class Projector(tf.Module):
    """Projects batches of images onto the range of `generator`.

    __call__(x, seed) with x float32 [batch_size, H, W, C] in the generator's pixel range
    ([0, 1]; CelebA [-1, 1]) and seed int32 [2]
    returns (x_rec float32 [B, H, W, C], z_star float32 [B, latent_dim], mse float32 [B]),
    where mse is the per-pixel mean squared error of the chosen restart.
    """

    def __init__(self, generator, image_shape, latent_dim: int,
                 settings: ProjectionSettings = ProjectionSettings(), name=None):
        super().__init__(name=name)
        self.generator = generator
        self.settings = settings.validate()
        self.latent_dim = latent_dim
        self.image_shape = tuple(image_shape)
        self.traces = 0  # how many times the graph was traced (tests check it stays 1)
        spec = [tf.TensorSpec([settings.batch_size, *self.image_shape], tf.float32),
                tf.TensorSpec([2], tf.int32)]
        self._project = tf.function(self._project_impl, input_signature=spec)

    def __call__(self, x, seed):
        return self._project(tf.convert_to_tensor(x, tf.float32),
                             tf.convert_to_tensor(seed, tf.int32))

    def _start(self, x, seed):
        """(targets, z0, velocity0) of a batch: each image tiled R times ([B*R, H, W, C],
        image-major), z0 ~ N(0, 1/latent_dim) from the stateless `seed`, zero momentum. Every
        projection starts here, so projections with the same seed share their restarts."""
        s = self.settings
        targets = tf.repeat(x, s.rec_rr, axis=0)
        z = tf.random.stateless_normal([s.batch_size * s.rec_rr, self.latent_dim], seed=seed,
                                       stddev=1.0 / self.latent_dim ** 0.5)
        return targets, z, tf.zeros_like(z)

    def _restart_mse(self, z, targets):
        rec = self.generator(z, training=False)
        return tf.reduce_mean(tf.square(rec - targets), axis=[1, 2, 3])

    def _descend(self, z, velocity, targets, steps: int):
        """`steps` momentum steps on every row of z ([N, latent_dim]) towards `targets`."""
        s = self.settings

        def step(i, z, velocity):
            with tf.GradientTape() as tape:
                tape.watch(z)
                loss = tf.reduce_sum(self._restart_mse(z, targets))
            grad = tape.gradient(loss, z)
            velocity = s.momentum * velocity + grad        # TF1 MomentumOptimizer
            return i + 1, z - s.rec_lr * velocity, velocity

        _, z, velocity = tf.while_loop(lambda i, *_: i < steps, step,
                                       (tf.constant(0), z, velocity), parallel_iterations=1)
        return z, velocity

    def unrolled(self, x, seed):
        """P(x) as a differentiable function of x: the same L momentum steps and best restart as
        __call__ (no early stop), but every step's gradient on z is itself recorded, so an outer
        GradientTape differentiates x_rec through all L steps (second derivatives of the
        generator). Memory grows linearly in L (`unrolled_memory_bytes`); the argmin over
        restarts is piecewise constant and passes no gradient.

        x: float32 [batch_size, H, W, C] in [0, 1]; seed int32 [2].
        Returns x_rec float32 [batch_size, H, W, C] in [0, 1].
        """
        s = self.settings
        batch, restarts = s.batch_size, s.rec_rr
        targets, z, velocity = self._start(x, seed)
        for _ in range(s.rec_iters):  # unrolled in the graph: the outer tape sees every step
            with tf.GradientTape() as inner:
                inner.watch(z)
                loss = tf.reduce_sum(self._restart_mse(z, targets))
            velocity = s.momentum * velocity + inner.gradient(loss, z)
            z = z - s.rec_lr * velocity
        mse = tf.reshape(self._restart_mse(z, targets), [batch, restarts])
        best = tf.argmin(mse, axis=1, output_type=tf.int32)
        return self.generator(tf.gather(z, tf.range(batch) * restarts + best), training=False)

    def _project_impl(self, x, seed):
        self.traces += 1
        s = self.settings
        batch, restarts = s.batch_size, s.rec_rr
        targets, z, velocity = self._start(x, seed)
        z, velocity = self._descend(z, velocity, targets, s.prune_step())
        if s.pruning:
            # Keep the rec_keep restarts of each image with the lowest MSE (ties: lower index).
            mse = tf.reshape(self._restart_mse(z, targets), [batch, restarts])
            _, keep = tf.math.top_k(-mse, k=s.rec_keep, sorted=True)
            rows = tf.reshape(tf.range(batch)[:, None] * restarts + keep, [-1])
            z, velocity = tf.gather(z, rows), tf.gather(velocity, rows)
            restarts = s.rec_keep
            targets = tf.repeat(x, restarts, axis=0)
            z, velocity = self._descend(z, velocity, targets, s.rec_iters - s.prune_step())
        return self._best_restart(z, targets, batch, restarts)

    def _best_restart(self, z, targets, batch: int, restarts: int):
        """(x_rec, z_star, mse) of each image's restart with the lowest MSE at z."""
        mse = tf.reshape(self._restart_mse(z, targets), [batch, restarts])
        best = tf.argmin(mse, axis=1, output_type=tf.int32)
        flat = tf.range(batch) * restarts + best
        z_star = tf.gather(z, flat)
        x_rec = self.generator(z_star, training=False)
        return x_rec, z_star, tf.gather(tf.reshape(mse, [-1]), flat)


class SnapshotProjector:
    """A Projector at L that also gives the projection at each smaller L in `steps`, from the
    same run: the learning rate is constant and the restarts start from the same seeded z, so
    the first l steps of an L-step projection are the l-step projection, and the restart
    chosen at step l is the one an l-step projection chooses (tests check they are equal).
    An L sweep (Table 8) then costs one projection at the largest L instead of one per L.

    __call__(x, seed) returns what the L-step Projector returns; afterwards `last` holds
    {l: (x_rec, mse)} (numpy) of that batch for every l in `steps`. No early stop.
    """

    def __init__(self, projector: Projector, steps):
        s = projector.settings
        self.steps = tuple(sorted({int(step) for step in steps}))
        if s.pruning:
            raise ValueError("snapshots of an early-stopped projection are not the projections "
                             "at smaller L: use --rec_prune_at=0")
        if not self.steps or self.steps[0] < 1 or self.steps[-1] >= s.rec_iters:
            raise ValueError(f"snapshot steps must be in [1, {s.rec_iters}) (L), got {steps}")
        self.projector, self.settings = projector, s
        self.last = {}
        spec = [tf.TensorSpec([s.batch_size, *projector.image_shape], tf.float32),
                tf.TensorSpec([2], tf.int32)]
        self._project = tf.function(self._project_impl, input_signature=spec)

    def __call__(self, x, seed):
        outs = self._project(tf.convert_to_tensor(x, tf.float32),
                             tf.convert_to_tensor(seed, tf.int32))
        self.last = {step: (out[0].numpy(), out[2].numpy())
                     for step, out in zip(self.steps, outs[:-1])}
        return outs[-1]

    def _project_impl(self, x, seed):
        p, s = self.projector, self.settings
        batch, restarts = s.batch_size, s.rec_rr
        targets, z, velocity = p._start(x, seed)
        done, outs = 0, []
        for step in self.steps + (s.rec_iters,):
            z, velocity = p._descend(z, velocity, targets, step - done)
            done = step
            outs.append(p._best_restart(z, targets, batch, restarts))
        return outs
