"""WGAN-GP (Gulrajani et al. 2017) as a Keras model, with the release's hyper-parameters.

The release computed the gradient-penalty norm over one spatial axis only; here it is the L2
norm over all non-batch axes, with one uniform interpolation coefficient per example.
"""

import hashlib

import keras
import numpy as np
import tensorflow as tf

from defense_gan import checkpoints, dataset_spec, networks


def critic_wasserstein_loss(d_real: tf.Tensor, d_fake: tf.Tensor) -> tf.Tensor:
    """Critic loss without penalty: E[D(fake)] - E[D(real)]. Scores float32 [N]."""
    return tf.reduce_mean(d_fake) - tf.reduce_mean(d_real)


def generator_loss(d_fake: tf.Tensor) -> tf.Tensor:
    """Generator loss: -E[D(G(z))]."""
    return -tf.reduce_mean(d_fake)


def gradient_penalty(critic, real: tf.Tensor, fake: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat = real + alpha (fake - real).

    real, fake: float32 [N, ...]; alpha: float32 [N] in [0, 1], one per example. The norm is
    taken over all non-batch axes.
    """
    return tf.reduce_mean(per_example_gradient_penalty(critic, real, fake, alpha))


def per_example_gradient_penalty(critic, real: tf.Tensor, fake: tf.Tensor,
                                 alpha: tf.Tensor) -> tf.Tensor:
    """(||grad_x D(x_hat_i)||_2 - 1)^2 for each example i: float32 [N] (arguments as
    `gradient_penalty`). A per-example quantity, so a distributed step averages it over the
    global batch like the other losses."""
    alpha = tf.reshape(alpha, [-1] + [1] * (len(real.shape) - 1))
    x_hat = real + alpha * (fake - real)
    with tf.GradientTape() as tape:
        tape.watch(x_hat)
        scores = critic(x_hat, training=True)
    grads = tape.gradient(scores, x_hat)
    axes = list(range(1, len(grads.shape)))
    norms = tf.sqrt(tf.reduce_sum(tf.square(grads), axis=axes) + 1e-12)
    return tf.square(norms - 1.0)


class WGAN(keras.Model):
    """Generator + critic trained with WGAN-GP.

    `train_step(real)` takes real: float32 [critic_iters, batch, H, W, C] in the data set's
    pixel range (a fresh
    batch for every critic step, as the release) and runs `critic_iters` critic updates then
    one generator update. Noise comes from `self.rng` (a checkpointed tf.random.Generator), so
    a resumed run continues the same random stream.
    """

    def __init__(self, generator, critic, latent_dim=128, critic_iters=5, gp_weight=10.0,
                 seed=0, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.critic = critic
        self.latent_dim = latent_dim
        self.critic_iters = critic_iters
        self.gp_weight = gp_weight
        self.rng = tf.random.Generator.from_seed(seed)

    def compile(self, g_optimizer, d_optimizer, **kwargs):
        super().compile(**kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer

    def call(self, z, training=False):
        return self.generator(z, training=training)

    def _critic_step(self, real):
        batch = tf.shape(real)[0]
        z = self.rng.normal([batch, self.latent_dim])
        alpha = self.rng.uniform([batch])
        with tf.GradientTape() as tape:
            fake = self.generator(z, training=True)
            d_real = self.critic(real, training=True)
            d_fake = self.critic(fake, training=True)
            gp = gradient_penalty(self.critic, real, fake, alpha)
            wasserstein = critic_wasserstein_loss(d_real, d_fake)
            d_loss = wasserstein + self.gp_weight * gp
        grads = tape.gradient(d_loss, self.critic.trainable_variables)
        self.d_optimizer.apply_gradients(zip(grads, self.critic.trainable_variables))
        return d_loss, gp, -wasserstein

    def _generator_step(self, batch):
        z = self.rng.normal([batch, self.latent_dim])
        with tf.GradientTape() as tape:
            g_loss = generator_loss(self.critic(self.generator(z, training=True), training=True))
        grads = tape.gradient(g_loss, self.generator.trainable_variables)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_variables))
        return g_loss

    def validation_wasserstein(self, images: tf.Tensor, seed: int, batch: int = 500) -> float:
        """The critic's Wasserstein estimate mean D(x) - mean D(G(z)) on held-out images
        (float32 [N, H, W, C] in the pixel range) and N fixed latent vectors (seed): a
        training-curve number that does not depend on the training batches, written into each
        export."""
        n = int(images.shape[0])
        z = tf.random.stateless_normal([n, self.latent_dim], seed=[seed, 11])
        real_sum = fake_sum = 0.0
        for lo in range(0, n, batch):
            real_sum += float(tf.reduce_sum(tf.cast(
                self.critic(images[lo:lo + batch], training=False), tf.float32)))
            fake_sum += float(tf.reduce_sum(tf.cast(
                self.critic(self.generator(z[lo:lo + batch], training=False), training=False),
                tf.float32)))
        return (real_sum - fake_sum) / n

    def train_step(self, real):
        for i in range(self.critic_iters):
            d_loss, gp, w_dist = self._critic_step(real[i])
        g_loss = self._generator_step(tf.shape(real)[1])
        return {"critic_loss": d_loss, "generator_loss": g_loss, "gradient_penalty": gp,
                "wasserstein": w_dist}

    def distributed_train_step(self, strategy, global_batch: int):
        """`train_step` under a tf.distribute `strategy` (models and optimizers built in its
        scope): a tf.function step(real) with real the per-replica slices ([critic_iters,
        global_batch / replicas, H, W, C], `distribute.split_batch` along axis 1) that returns
        the same metrics as `train_step` on the global batch, as global means.

        The noise (z, alpha) is drawn for the global batch from `self.rng` in the same order as
        `train_step`, and each replica takes its rows, so a run is the one-device run up to
        float rounding of the cross-replica sums: every loss, the gradient penalty included,
        is a per-example quantity averaged over the GLOBAL batch
        (tf.nn.compute_average_loss), and the optimizers sum the replicas' gradients.
        """
        from defense_gan import distribute  # noqa: PLC0415 (only distributed runs need it)
        local = distribute.per_replica_batch(strategy, global_batch)

        def average(per_example):
            return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)

        def critic_replica(real, z, alpha):
            z, alpha = distribute.replica_slice(z, local), distribute.replica_slice(alpha, local)
            with tf.GradientTape() as tape:
                fake = self.generator(z, training=True)
                wasserstein = (self.critic(fake, training=True)
                               - self.critic(real, training=True))
                gp = per_example_gradient_penalty(self.critic, real, fake, alpha)
                d_loss = average(wasserstein + self.gp_weight * gp)
            grads = tape.gradient(d_loss, self.critic.trainable_variables)
            self.d_optimizer.apply_gradients(zip(grads, self.critic.trainable_variables))
            return {"critic_loss": d_loss, "gradient_penalty": average(gp),
                    "wasserstein": -average(wasserstein)}

        def generator_replica(z):
            z = distribute.replica_slice(z, local)
            with tf.GradientTape() as tape:
                g_loss = average(-self.critic(self.generator(z, training=True), training=True))
            grads = tape.gradient(g_loss, self.generator.trainable_variables)
            self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_variables))
            return {"generator_loss": g_loss}

        @tf.function
        def step(real):
            for i in range(self.critic_iters):
                z = self.rng.normal([global_batch, self.latent_dim])
                alpha = self.rng.uniform([global_batch])
                critic = strategy.run(lambda r, z, a, i=i: critic_replica(r[i], z, a),
                                      args=(real, z, alpha))
            z = self.rng.normal([global_batch, self.latent_dim])
            metrics = {**critic, **strategy.run(generator_replica, args=(z,))}
            metrics = distribute.reduce_sum(strategy, metrics)
            return {k: metrics[k] for k in ("critic_loss", "generator_loss",
                                            "gradient_penalty", "wasserstein")}
        return step


def build_wgan(latent_dim=128, critic_iters=5, gp_weight=10.0, lr=1e-4, seed=0,
               precision="float32", spec=dataset_spec.MNIST) -> WGAN:
    """The one place that creates the GAN's models and optimizers (wrap in a strategy scope to
    distribute), for data set `spec` (a `dataset_spec.DatasetSpec`). Variables, optimizer
    slots included, exist on return, so checkpoints restore eagerly and strictly."""
    keras.utils.set_random_seed(seed)
    generator = networks.generator(spec, latent_dim, precision)
    critic = networks.critic(spec, precision)
    gan = WGAN(generator, critic, latent_dim, critic_iters, gp_weight, seed)
    adam = lambda: keras.optimizers.Adam(lr, beta_1=0.5, beta_2=0.9)  # noqa: E731
    gan.compile(g_optimizer=adam(), d_optimizer=adam())
    gan.g_optimizer.build(generator.trainable_variables)
    gan.d_optimizer.build(critic.trainable_variables)
    return gan


def untrained_generator(dataset: str, precision: str, seed: int, latent_dim: int = 128):
    """(generator, manifest) of the data set's generator with fresh random weights drawn with
    `seed` (the release's blackbox() labelled its none / adv_tr substitutes through one). The
    manifest names it like a checkpoint: folder "untrained (random init, seed S)" and, as
    "sha256", the hash of its initial weights, so whatever is keyed by sha256 tells it from a
    trained generator and from another draw. Sets Keras' global seed (as build_wgan does), so
    the models built after it in the process are seeded too."""
    keras.utils.set_random_seed(seed)
    generator = networks.generator(dataset_spec.get(dataset), latent_dim, precision)
    digest = hashlib.sha256()
    for v in generator.weights:
        digest.update(np.asarray(v.numpy(), np.float32).tobytes())
    return generator, {"folder": f"untrained (random init, seed {seed})",
                       "files": {"initial weights": digest.hexdigest()}, "iterations": 0,
                       "latent_dim": latent_dim, "dataset": dataset}


def load_generator(folder: str, dataset: str, precision: str = "float32",
                   flag: str = "gan_dir"):
    """(generator, manifest) from a shipped or exported generator folder (or a --train_dir).

    The manifest's checksums are verified, it must name `dataset` and that data set's
    generator architecture (`dataset_spec`), and every variable must match; anything else is
    a one-line ConfigError naming `--flag`.
    """
    spec = dataset_spec.get(dataset)
    folder = checkpoints.resolve_model_dir(folder, flag)
    manifest = checkpoints.read_manifest(folder, flag, "generator", dataset)
    latent_dim = int(manifest.get("latent_dim", 128))
    generator = networks.generator(spec, latent_dim, precision)
    manifest = checkpoints.load(folder, generator, flag, "generator", dataset,
                                spec.generator_architecture)
    return generator, manifest
