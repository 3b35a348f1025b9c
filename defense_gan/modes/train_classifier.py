"""--mode=train_classifier: train classifier --model (A-F) on clean images, the FGSM
adversarial-training baseline with --adv_train, or Defense-GAN-Rec with --train_on_recs (on
reconstructions of the training images, from the cache in --recs_dir, built where missing)."""

import contextlib
import dataclasses

import numpy as np
import tensorflow as tf

from defense_gan import (checkpoints, classifiers, data, dataset_spec, distribute, gan,
                         hardware, projection, rec_cache, training)
from defense_gan.config import Config


def reconstruction_source(cfg: Config):
    """(cache, make_projector(image_shape), description) for --train_on_recs: the generator
    and the fast projection of --recs_*; refuses (ConfigError) a --recs_dir built with other
    settings. Nothing is written here."""
    precision = hardware.resolve_precision(cfg.recs_precision)
    generator, g_manifest = gan.load_generator(cfg.resolved_gan_dir(), cfg.dataset, precision)
    settings = projection.ProjectionSettings(cfg.recs_rec_iters, cfg.recs_rec_rr, cfg.rec_lr,
                                             batch_size=cfg.eval_batch_size,
                                             rec_prune_at=cfg.recs_rec_prune_at,
                                             rec_keep=cfg.recs_rec_keep)

    def make_projector(image_shape):
        return projection.Projector(generator, image_shape,
                                    int(g_manifest.get("latent_dim", 128)), settings)
    key = {**rec_cache.projection_key(g_manifest, settings, cfg.seed, precision),
           "dataset": cfg.dataset, "chunk_size": cfg.recs_chunk_size}
    folder = cfg.resolved_recs_dir()
    cache = rec_cache.ReconstructionCache(folder, key)
    description = {"folder": folder, "generator": {"folder": g_manifest["folder"],
                                                   "sha256": g_manifest["files"]},
                   "projection": settings.cache_key(), "precision": precision,
                   "seed": cfg.seed}
    return cache, make_projector, description


def run(cfg: Config) -> None:
    strategy = distribute.make_strategy(cfg.strategy, cfg.cpu_devices)  # before any TF op
    distribute.per_replica_batch(strategy, cfg.batch_size)  # --batch_size is the global batch
    train_dir = cfg.resolved_train_dir()
    recs = reconstruction_source(cfg) if cfg.train_on_recs else None
    if distribute.is_chief(strategy):
        training.prepare_train_dir(train_dir, create=False)  # fail fast, leave nothing
    spec = dataset_spec.get(cfg.dataset)
    splits = data.load(cfg.dataset, cfg.data_source, cfg.data_dir, cfg.train_limit)
    x_train, x_val_rec, trained_on = splits.x_train, None, "clean training images"
    if recs is not None:
        cache, make_projector, description = recs
        projector = make_projector(splits.image_shape)
        x_train, mse, stats = cache.build("train", data.to_float(splits.x_train).numpy(),
                                          projector, cfg.seed, cfg.recs_chunk_size,
                                          progress=lambda m: print(m, flush=True))
        description.update(train_images=len(x_train), train_mean_mse=float(np.mean(mse)),
                           images_per_second_this_run=stats["images_per_second"])
        if cfg.recs_validation:
            x_val_rec = cache.build("validation",
                                    data.to_float(splits.x_val[:cfg.recs_validation]).numpy(),
                                    projector, cfg.seed, cfg.recs_chunk_size,
                                    progress=lambda m: print(m, flush=True))[0]
        description["validation_images"] = 0 if x_val_rec is None else len(x_val_rec)
        trained_on = "reconstructions of the training images (Defense-GAN-Rec)"
        print(f"[train_classifier] training on {len(x_train)} reconstructions from "
              f"{description['folder']}", flush=True)
    with strategy.scope() if strategy else contextlib.nullcontext():
        trainer = classifiers.build_trainer(cfg.model, cfg.classifier_lr, cfg.seed,
                                            cfg.precision,
                                            cfg.adv_train_eps if cfg.adv_train else None, spec)
    if strategy is None:
        train_step = tf.function(trainer.train_step)
    else:  # batches of --batch_size (the global batch), split over the replicas
        distributed_step = trainer.distributed_train_step(strategy, cfg.batch_size)
        train_step = lambda batch: distributed_step(  # noqa: E731
            distribute.split_batch(strategy, batch))
    steps_per_epoch = len(x_train) // cfg.batch_size

    def make_step_fn(start_step):
        batches = iter(data.resumable_batches((x_train, splits.y_train),
                                              cfg.batch_size, cfg.seed, start_step,
                                              pixel_range=spec.pixel_range))
        return lambda step: train_step(next(batches))

    def on_export(step, wall_clock):
        # Accuracies cost 20,000 forward passes: measure them at epoch ends only.
        if step % steps_per_epoch:
            return
        metrics = {
            "validation_accuracy": classifiers.accuracy(trainer.classifier, splits.x_val,
                                                        splits.y_val,
                                                        pixel_range=spec.pixel_range),
            "test_accuracy": classifiers.accuracy(trainer.classifier, splits.x_test,
                                                  splits.y_test, pixel_range=spec.pixel_range)}
        if x_val_rec is not None:
            metrics["validation_rec_accuracy"] = classifiers.accuracy(
                trainer.classifier, x_val_rec, splits.y_val[:len(x_val_rec)])
            metrics["validation_rec_images"] = len(x_val_rec)
        print(f"[train_classifier] step {step}: " + ", ".join(
            f"{k.replace('_', ' ')} {v:.4f}" for k, v in metrics.items()
            if isinstance(v, float)), flush=True)
        checkpoints.export(f"{train_dir}/{training.EXPORT_SUBDIR}", trainer.classifier, {
            "kind": "classifier", "dataset": cfg.dataset,
            "architecture": classifiers.architecture_name(cfg.model), "model": cfg.model,
            "adversarially_trained": cfg.adv_train,
            "adv_train_eps": cfg.adv_train_eps if cfg.adv_train else None,
            "trained_on": trained_on,
            "reconstructions": recs[2] if recs is not None else None,
            "steps": step, "epochs": round(step / steps_per_epoch, 3),
            "wall_clock_seconds": round(wall_clock, 1), "metrics": metrics,
            "flags": dataclasses.asdict(cfg)})

    objects = {"classifier": trainer.classifier, "optimizer": trainer.optimizer}
    training.run(train_dir, objects, make_step_fn, cfg.epochs * steps_per_epoch,
                 log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every,
                 keep=cfg.keep_checkpoints, flags=dataclasses.asdict(cfg), on_export=on_export,
                 name="train_classifier", strategy=strategy)
