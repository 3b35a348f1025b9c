"""--mode=train_gan: train the WGAN-GP generator on the clean training split."""

import contextlib
import dataclasses

import tensorflow as tf

from defense_gan import (checkpoints, data, dataset_spec, distribute, gan, summaries,
                         training)
from defense_gan.config import Config

SAMPLE_GRID = 64
VALIDATION_IMAGES = 1000  # for the export's critic Wasserstein estimate (about a second)


def run(cfg: Config) -> None:
    strategy = distribute.make_strategy(cfg.strategy, cfg.cpu_devices)  # before any TF op
    distribute.per_replica_batch(strategy, cfg.batch_size)  # --batch_size is the global batch
    train_dir = cfg.resolved_train_dir()
    if distribute.is_chief(strategy):
        training.prepare_train_dir(train_dir, create=False)  # fail fast, leave nothing
    spec = dataset_spec.get(cfg.dataset)
    splits = data.load(cfg.dataset, cfg.data_source, cfg.data_dir, cfg.train_limit)
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = gan.build_wgan(cfg.latent_dim, cfg.critic_iters, cfg.gp_weight, cfg.gan_lr,
                               cfg.seed, cfg.precision, spec)
    if strategy is None:
        train_step = tf.function(model.train_step)
    else:  # batches of --batch_size (the global batch), split along axis 1 over the replicas
        distributed_step = model.distributed_train_step(strategy, cfg.batch_size)
        train_step = lambda real: distributed_step(  # noqa: E731
            distribute.split_batch(strategy, real, axis=1))
    fixed_z = tf.random.stateless_normal([SAMPLE_GRID, cfg.latent_dim], seed=[cfg.seed, 7])

    def make_step_fn(start_step):
        batches = iter(data.resumable_batches(splits.x_train, cfg.batch_size, cfg.seed,
                                              start_step, group=cfg.critic_iters,
                                              pixel_range=spec.pixel_range))
        return lambda step: train_step(next(batches))

    def on_image(writer, step):
        grid = summaries.image_grid(model.generator(fixed_z).numpy(), rows=8,
                                    pixel_range=spec.pixel_range)
        summaries.image(writer, step, "samples", grid)
        summaries.write_png(f"{train_dir}/samples.png", grid)

    x_val = data.to_float(splits.x_val[:VALIDATION_IMAGES], spec.pixel_range)

    def on_export(step, wall_clock):
        metrics = {"validation_wasserstein": round(model.validation_wasserstein(x_val, cfg.seed),
                                                   5),
                   "validation_images": int(x_val.shape[0])}
        checkpoints.export(f"{train_dir}/{training.EXPORT_SUBDIR}", model.generator, {
            "kind": "generator", "dataset": cfg.dataset,
            "architecture": spec.generator_architecture, "latent_dim": cfg.latent_dim,
            "iterations": step, "wall_clock_seconds": round(wall_clock, 1), "metrics": metrics,
            "flags": dataclasses.asdict(cfg),
            "training": "WGAN-GP, critic_iters %d, gp %.1f, Adam %.0e (0.5, 0.9), batch %d, %s"
                        % (cfg.critic_iters, cfg.gp_weight, cfg.gan_lr, cfg.batch_size,
                           cfg.precision)})

    objects = {"generator": model.generator, "critic": model.critic,
               "g_optimizer": model.g_optimizer, "d_optimizer": model.d_optimizer,
               "rng": model.rng}
    training.run(train_dir, objects, make_step_fn, cfg.iterations, log_every=cfg.log_every,
                 checkpoint_every=cfg.checkpoint_every, keep=cfg.keep_checkpoints,
                 flags=dataclasses.asdict(cfg), on_image=on_image, image_every=cfg.image_every,
                 on_export=on_export, name="train_gan", strategy=strategy)
