"""The Defense-GAN projection x -> G(z*) on toy generators: descent, recovery, the restart choice,
one trace per batch shape, stateless seeding, the initial z, batching and settings checks."""

import numpy as np
import pytest

import conftest
import tensorflow as tf

from conftest import TINY_LATENT_DIM
from defense_gan import data, projection, rec_cache
from defense_gan.projection import ProjectionSettings, Projector

SHAPE = (28, 28, 1)
LATENT = TINY_LATENT_DIM
B = 4  # images per projector call


@pytest.fixture(scope="module")
def dense_generator():
    return conftest.dense_generator(1, LATENT, SHAPE)


@pytest.fixture(scope="module")
def digits():
    """B MNIST test digits, float32 [B, 28, 28, 1] in [0, 1] (not in any toy generator's range)."""
    return data.to_float(data.load("mnist").x_test[:B]).numpy()


def projector(generator, rec_iters=3, rec_rr=2, rec_lr=1.0, batch_size=B, latent=LATENT):
    return Projector(generator, SHAPE, latent,
                     ProjectionSettings(rec_iters, rec_rr, rec_lr, batch_size=batch_size))


def uniform_images(n, seed):
    return np.random.default_rng(seed).uniform(0, 1, (n, *SHAPE)).astype(np.float32)


def reference_restarts(generator, x, seed, rec_iters, rec_rr, rec_lr, momentum=0.7):
    """The documented algorithm, step by step in eager mode: every image tiled rec_rr times
    (image-major), z0 ~ N(0, 1/latent) from stateless_normal(seed), rec_iters momentum steps on
    the sum over restarts of per-restart MSEs. Returns final z [B, R, latent], mse [B, R]."""
    targets = tf.repeat(x, rec_rr, axis=0)
    z = tf.random.stateless_normal([len(x) * rec_rr, LATENT], seed=seed,
                                   stddev=1.0 / LATENT ** 0.5)
    velocity = tf.zeros_like(z)

    def restart_mse(z):
        return tf.reduce_mean(tf.square(generator(z) - targets), axis=[1, 2, 3])

    for _ in range(rec_iters):
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = tf.reduce_sum(restart_mse(z))
        velocity = momentum * velocity + tape.gradient(loss, z)
        z = z - rec_lr * velocity
    return (z.numpy().reshape(len(x), rec_rr, LATENT),
            restart_mse(z).numpy().reshape(len(x), rec_rr))


# --- what the projection computes --------------------------------------------------------------

def test_thirty_steps_reach_a_lower_mse_than_one_step_from_the_same_start(dense_generator,
                                                                         digits):
    _, _, mse_1 = projector(dense_generator, rec_iters=1)(digits, [3, 0])
    _, _, mse_30 = projector(dense_generator, rec_iters=30)(digits, [3, 0])
    # Digits lie far from this generator's range: the floor is high, but every MSE falls.
    assert np.all(mse_30.numpy() < 0.97 * mse_1.numpy()), (mse_1.numpy(), mse_30.numpy())


def test_an_image_in_the_generators_range_is_recovered_with_near_zero_mse(dense_generator):
    z_true = tf.random.stateless_normal([B, LATENT], seed=[42, 42], stddev=LATENT ** -0.5)
    x = dense_generator(z_true)
    x_rec, z_star, mse = projector(dense_generator, rec_iters=100, rec_lr=4.0)(x, [0, 0])
    assert np.all(mse.numpy() < 1e-10), mse.numpy()
    np.testing.assert_allclose(x_rec.numpy(), x.numpy(), atol=1e-4)
    np.testing.assert_allclose(z_star.numpy(), z_true.numpy(), atol=1e-3)  # W has full rank


def test_the_restart_with_the_lowest_final_mse_is_chosen(dense_generator, digits):
    rec_iters, rec_rr, seed = 4, 4, [5, 1]
    _, z_star, mse = projector(dense_generator, rec_iters, rec_rr)(digits, seed)
    ref_z, ref_mse = reference_restarts(dense_generator, tf.constant(digits), seed, rec_iters,
                                        rec_rr, rec_lr=1.0)
    best = ref_mse.argmin(axis=1)
    # Meaningful only if the restarts differ and the best is not always the first one.
    assert np.all(ref_mse.max(axis=1) > 1.01 * ref_mse.min(axis=1)), ref_mse
    assert np.any(best != 0), ref_mse
    np.testing.assert_allclose(mse.numpy(), ref_mse.min(axis=1), rtol=1e-4)
    np.testing.assert_allclose(z_star.numpy(), ref_z[np.arange(B), best], rtol=1e-4, atol=1e-5)


def test_output_is_g_of_z_star_and_mse_is_its_per_pixel_mse_to_the_input(dense_generator,
                                                                         digits):
    x_rec, z_star, mse = projector(dense_generator)(digits, [0, 0])
    np.testing.assert_allclose(x_rec.numpy(), dense_generator(z_star).numpy(), atol=1e-6)
    np.testing.assert_allclose(mse.numpy(), np.mean((x_rec.numpy() - digits) ** 2, axis=(1, 2, 3)),
                               rtol=1e-5)


# --- compilation, seeding, initialisation ------------------------------------------------------

def test_three_calls_with_different_images_and_seeds_trace_the_graph_once(tiny_generator):
    p = projector(tiny_generator)
    for k in range(3):
        p(uniform_images(B, k), [k, 7 * k])
    assert p.traces == 1


def test_the_same_seed_gives_identical_output(tiny_generator):
    p, x = projector(tiny_generator), uniform_images(B, 0)
    first, second = p(x, [1, 2]), p(x, [1, 2])
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_different_seeds_give_different_z_star(tiny_generator):
    p, x = projector(tiny_generator), uniform_images(B, 0)
    _, z_a, _ = p(x, [1, 2])
    _, z_b, _ = p(x, [1, 3])
    assert np.all(np.abs(z_a.numpy() - z_b.numpy()).max(axis=1) > 1e-3)


def test_z_starts_from_a_normal_with_variance_one_over_latent_dim(tiny_generator):
    """With one restart, one step and a negligible learning rate z* is the initial z; 8192
    draws pin its mean to 0 (+-0.01, 3.6 standard errors) and its variance to 1/latent_dim
    (+-10%, 6 standard errors), ruling out N(0, 1) and a stddev of 1/latent_dim."""
    p = projector(tiny_generator, rec_iters=1, rec_rr=1, rec_lr=1e-9, batch_size=1024)
    _, z_star, _ = p(uniform_images(1024, 0), [0, 0])
    z = z_star.numpy()
    assert abs(z.mean()) < 0.01
    assert z.var() == pytest.approx(1.0 / LATENT, rel=0.1)
    assert len(np.unique(z.round(6), axis=0)) == len(z)  # every image has its own start


# --- batching and settings ---------------------------------------------------------------------

def test_reconstruct_pads_the_last_batch_and_returns_exactly_n_results(tiny_generator):
    p = projector(tiny_generator, batch_size=2)
    images = uniform_images(5, 0)
    x_rec, mse, rate = rec_cache.reconstruct(images, p, seed=9)
    assert x_rec.shape == (5, *SHAPE) and mse.shape == (5,)
    assert rate > 0 and p.traces == 1  # the padded batch reused the one graph
    # Batch k is projected with seed (9, k); the last batch is image 4 padded with itself.
    first = p(images[0:2], [9, 0])
    last = p(np.concatenate([images[4:5], images[4:5]]), [9, 2])
    np.testing.assert_array_equal(x_rec[0:2], first[0].numpy())
    np.testing.assert_array_equal(x_rec[4], last[0].numpy()[0])
    np.testing.assert_array_equal(mse[4], last[2].numpy()[0])


def test_reconstruct_again_with_a_cache_projects_nothing_and_returns_the_same(tiny_generator,
                                                                             tmp_path):
    p = projector(tiny_generator, batch_size=2)
    images = uniform_images(3, 1)
    cache = rec_cache.ProjectionCache(str(tmp_path), {"test": 1})
    first = rec_cache.reconstruct(images, p, seed=4, cache=cache)
    calls = []

    class Counting:
        settings = p.settings

        def __call__(self, x, seed):
            calls.append(seed)
            return p(x, seed)

    x_rec, mse, rate = rec_cache.reconstruct(images, Counting(), seed=4, cache=cache)
    assert calls == [] and rate is None
    np.testing.assert_array_equal(x_rec, first[0])
    np.testing.assert_array_equal(mse, first[1])


@pytest.mark.parametrize("field", ["rec_rr", "rec_iters", "batch_size"])
def test_settings_with_a_count_below_one_are_rejected_naming_the_flag(field):
    with pytest.raises(ValueError, match=f"--{field}"):
        ProjectionSettings(**{field: 0}).validate()


def test_projector_refuses_invalid_settings_at_construction(tiny_generator):
    with pytest.raises(ValueError, match="--rec_rr"):
        Projector(tiny_generator, SHAPE, LATENT, ProjectionSettings(rec_rr=0))


def test_default_settings_are_the_releases():
    s = projection.ProjectionSettings()
    assert (s.rec_iters, s.rec_rr, s.rec_lr, s.momentum) == (200, 10, 10.0, 0.7)


def test_snapshots_equal_the_projections_at_each_smaller_L(tiny_generator, digits):
    snap = projection.SnapshotProjector(projector(tiny_generator, rec_iters=7, rec_rr=3,
                                                  rec_lr=10.0), steps=[2, 5])
    x_rec, z_star, mse = snap(digits, [4, 1])
    for steps, (x_snap, mse_snap) in [*snap.last.items(), (7, (x_rec.numpy(), mse.numpy()))]:
        alone = projector(tiny_generator, rec_iters=steps, rec_rr=3, rec_lr=10.0)
        x_alone, _, mse_alone = alone(digits, [4, 1])
        np.testing.assert_allclose(x_snap, x_alone.numpy(), atol=1e-6)
        np.testing.assert_allclose(mse_snap, mse_alone.numpy(), rtol=1e-5)
    assert sorted(snap.last) == [2, 5]
    assert np.all(snap.last[5][1] < snap.last[2][1])  # the snapshots differ: descent goes on


@pytest.mark.parametrize("steps", [[], [0], [7], [9]])
def test_snapshot_steps_outside_1_to_L_are_refused(dense_generator, steps):
    with pytest.raises(ValueError, match="snapshot steps"):
        projection.SnapshotProjector(projector(dense_generator, rec_iters=7), steps)


def test_snapshots_of_an_early_stopped_projection_are_refused(dense_generator):
    pruned = Projector(dense_generator, SHAPE, LATENT,
                       ProjectionSettings(8, 4, 1.0, batch_size=B, rec_prune_at=0.5, rec_keep=2))
    with pytest.raises(ValueError, match="rec_prune_at=0"):
        projection.SnapshotProjector(pruned, [2])
