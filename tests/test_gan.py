"""defense_gan.gan and the GAN networks: sizes, the gradient penalty and one WGAN-GP step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from defense_gan import gan, networks

SHAPE = (3, 4, 1)  # tiny "images" for critics written by hand


def linear_critic(w):
    """f(x) = sum(w * x) per example: its input gradient is w everywhere."""
    w = tf.constant(w, tf.float32)
    return lambda x, training=False: tf.reduce_sum(w * x, axis=[1, 2, 3])


def weights_with_norm(norm, shape=SHAPE, seed=0):
    w = np.random.default_rng(seed).normal(size=shape)
    return w * norm / np.linalg.norm(w)


def random_pair(n=4, shape=SHAPE, seed=1):
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.uniform(size=(n, *shape)), tf.float32),
            tf.constant(rng.uniform(size=(n, *shape)), tf.float32))


def snapshot(variables):
    return [v.numpy().copy() for v in variables]


def test_generator_has_1554177_parameters():
    generator = networks.build(networks.Generator(128), (128,))
    assert generator.count_params() == 1_554_177


def test_critic_has_1030145_parameters():
    critic = networks.build(networks.Critic(), networks.MNIST_SHAPE)
    assert critic.count_params() == 1_030_145


def test_critic_alone_in_a_checkpoint_saves_every_weight(tmp_path):
    critic = networks.build(networks.Critic(), networks.MNIST_SHAPE)
    prefix = tf.train.Checkpoint(critic=critic).save(str(tmp_path / "critic"))
    saved = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    kernels = sorted(tuple(shape) for key, shape in saved.items()
                     if key.startswith("critic/") and "kernel" in key)
    assert kernels == [(5, 5, 1, 64), (5, 5, 64, 128), (5, 5, 128, 256), (4096, 1)]


@pytest.mark.parametrize("size,channels,filters", [(14, 64, 1), (7, 16, 8), (3, 4, 2)])
def test_subpixel_conv_transpose_equals_keras_transposed_convolution_and_its_gradients(
        size, channels, filters):
    layer = keras.layers.Conv2DTranspose(filters, 5, strides=2, padding="same")
    x = tf.random.stateless_normal([3, size, size, channels], [1, 2])
    layer.build(x.shape)
    layer.bias.assign(tf.random.stateless_normal(layer.bias.shape, [3, 4]))
    weights = [layer.kernel, layer.bias]

    def value_and_grads(f):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = f(x)
            loss = tf.reduce_sum(tf.sin(y))
        return [y] + tape.gradient(loss, [x] + weights)

    ours = value_and_grads(lambda t: networks.subpixel_conv_transpose(layer, t))
    for got, want in zip(ours, value_and_grads(layer)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)


def test_generator_equals_its_layers_with_the_keras_transposed_convolution_last():
    g = networks.build(networks.Generator(), (128,))
    z = tf.random.stateless_normal([4, 128], [5, 6])
    h = g.deconv2(g.crop(g.deconv1(g.reshape(g.fc(z)))))
    np.testing.assert_allclose(g(z).numpy(), tf.sigmoid(g.deconv3(h)).numpy(), atol=1e-6)


def test_generator_maps_latents_to_28x28x1_images_in_unit_range():
    generator = networks.build(networks.Generator(128), (128,))
    images = generator(tf.random.stateless_normal([3, 128], seed=[0, 1]) * 5.0).numpy()
    assert images.shape == (3, 28, 28, 1) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert images.std() > 0  # not a constant image


def test_critic_scores_each_image_with_one_float32():
    critic = networks.build(networks.Critic(), networks.MNIST_SHAPE)
    scores = critic(tf.zeros([5, 28, 28, 1]))
    assert scores.shape == (5,) and scores.dtype == tf.float32


@pytest.mark.parametrize("alpha", [[0.0] * 4, [1.0] * 4, [0.1, 0.5, 0.9, 0.3]])
def test_gradient_penalty_of_a_critic_with_gradient_norm_3_is_4_for_any_alpha(alpha):
    real, fake = random_pair()
    gp = gan.gradient_penalty(linear_critic(weights_with_norm(3.0)), real, fake,
                              tf.constant(alpha))
    assert float(gp) == pytest.approx(4.0, abs=1e-5)


def test_gradient_penalty_of_a_critic_with_unit_gradient_norm_is_zero():
    real, fake = random_pair()
    gp = gan.gradient_penalty(linear_critic(weights_with_norm(1.0)), real, fake,
                              tf.constant([0.2, 0.4, 0.6, 0.8]))
    assert float(gp) == pytest.approx(0.0, abs=1e-6)


def test_gradient_penalty_takes_the_norm_over_all_non_batch_axes():
    # Unit norm over the whole image, but not over any single axis: the original release's
    # norm over axis 1 only would see per-column norms of 0.5 and a penalty of 0.25.
    w = np.full(SHAPE, 0.5 / np.sqrt(3.0))  # 12 entries, total norm 1; each axis-1 column 0.5
    real, fake = random_pair()
    buggy = float(tf.reduce_mean(tf.square(
        tf.sqrt(tf.reduce_sum(tf.square(tf.constant(w, tf.float32)), axis=0)) - 1.0)))
    assert buggy == pytest.approx(0.25, abs=1e-6)
    gp = gan.gradient_penalty(linear_critic(w), real, fake, tf.constant([0.3] * 4))
    assert float(gp) == pytest.approx(0.0, abs=1e-6)


def test_gradient_penalty_averages_per_example_penalties():
    # f(x) = ||x||^2 / 2 has gradient x, so each example's penalty is (||x_hat_i|| - 1)^2.
    critic = lambda x, training=False: 0.5 * tf.reduce_sum(tf.square(x), axis=[1, 2, 3])  # noqa
    real = tf.zeros([2, *SHAPE])
    fake = tf.concat([tf.fill([1, *SHAPE], 1.0), tf.fill([1, *SHAPE], 2.0)], axis=0)
    alpha = tf.constant([0.5, 0.25])  # x_hat: all 0.5 (norm sqrt(3)), all 0.5 (norm sqrt(3))
    expected = (np.sqrt(12 * 0.25) - 1.0) ** 2
    assert float(gan.gradient_penalty(critic, real, fake, alpha)) == pytest.approx(
        expected, rel=1e-5)


def test_gradient_penalty_interpolates_each_example_with_its_own_alpha():
    seen = []

    def recording_critic(x, training=False):
        seen.append(x.numpy())
        return tf.reduce_sum(x, axis=[1, 2, 3])

    real, fake = random_pair(n=3)
    alpha = np.array([0.0, 0.25, 1.0], np.float32)
    gan.gradient_penalty(recording_critic, real, fake, tf.constant(alpha))
    (x_hat,) = seen
    real, fake = real.numpy(), fake.numpy()
    expected = real + alpha[:, None, None, None] * (fake - real)
    np.testing.assert_allclose(x_hat, expected, atol=1e-6)
    np.testing.assert_allclose(x_hat[0], real[0], atol=1e-6)
    np.testing.assert_allclose(x_hat[2], fake[2], atol=1e-6)
    assert np.all(x_hat >= np.minimum(real, fake) - 1e-6)
    assert np.all(x_hat <= np.maximum(real, fake) + 1e-6)


def test_wgan_train_step_updates_critic_and_generator_and_reports_finite_metrics():
    model = gan.build_wgan(latent_dim=16, critic_iters=2, gp_weight=10.0, lr=1e-3, seed=0)
    critic_before = snapshot(model.critic.trainable_variables)
    generator_before = snapshot(model.generator.trainable_variables)
    real = tf.random.stateless_uniform([2, 4, 28, 28, 1], seed=[1, 2])
    metrics = model.train_step(real)
    assert set(metrics) == {"critic_loss", "generator_loss", "gradient_penalty", "wasserstein"}
    for name, value in metrics.items():
        assert np.isfinite(float(value)), name
    assert float(metrics["gradient_penalty"]) >= 0.0
    for before, var in zip(critic_before, model.critic.trainable_variables):
        if var.path.endswith("out/bias"):
            # E[D(fake)] - E[D(real)] cancels the output bias and the penalty ignores it:
            # its gradient is exactly zero.
            assert np.array_equal(before, var.numpy()), var.path
        else:
            assert not np.array_equal(before, var.numpy()), var.path
    for before, var in zip(generator_before, model.generator.trainable_variables):
        assert not np.array_equal(before, var.numpy()), var.path
    assert int(model.d_optimizer.iterations) == 2
    assert int(model.g_optimizer.iterations) == 1
