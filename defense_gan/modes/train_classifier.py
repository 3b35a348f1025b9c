"""--mode=train_classifier: train classifier --model (A-F) on clean images, or the FGSM
adversarial-training baseline with --adv_train."""

import contextlib
import dataclasses

import tensorflow as tf

from defense_gan import checkpoints, classifiers, data, distribute, training
from defense_gan.config import Config


def run(cfg: Config) -> None:
    strategy = distribute.make_strategy(cfg.strategy, cfg.cpu_devices)  # before any TF op
    distribute.per_replica_batch(strategy, cfg.batch_size)  # --batch_size is the global batch
    train_dir = cfg.resolved_train_dir()
    if distribute.is_chief(strategy):
        training.prepare_train_dir(train_dir)  # fail fast, before the data load and model build
    splits = data.load(cfg.dataset, cfg.data_source, cfg.data_dir, cfg.train_limit)
    with strategy.scope() if strategy else contextlib.nullcontext():
        trainer = classifiers.build_trainer(cfg.model, cfg.classifier_lr, cfg.seed,
                                            cfg.precision,
                                            cfg.adv_train_eps if cfg.adv_train else None,
                                            splits.image_shape)
    if strategy is None:
        train_step = tf.function(trainer.train_step)
    else:  # batches of --batch_size (the global batch), split over the replicas
        distributed_step = trainer.distributed_train_step(strategy, cfg.batch_size)
        train_step = lambda batch: distributed_step(  # noqa: E731
            distribute.split_batch(strategy, batch))
    steps_per_epoch = len(splits.x_train) // cfg.batch_size

    def make_step_fn(start_step):
        batches = iter(data.resumable_batches((splits.x_train, splits.y_train),
                                              cfg.batch_size, cfg.seed, start_step))
        return lambda step: train_step(next(batches))

    def on_export(step, wall_clock):
        # Accuracies cost 20,000 forward passes: measure them at epoch ends only.
        if step % steps_per_epoch:
            return
        metrics = {
            "validation_accuracy": classifiers.accuracy(trainer.classifier, splits.x_val,
                                                        splits.y_val),
            "test_accuracy": classifiers.accuracy(trainer.classifier, splits.x_test,
                                                  splits.y_test)}
        print(f"[train_classifier] step {step}: validation accuracy "
              f"{metrics['validation_accuracy']:.4f}, test accuracy "
              f"{metrics['test_accuracy']:.4f}", flush=True)
        checkpoints.export(f"{train_dir}/{training.EXPORT_SUBDIR}", trainer.classifier, {
            "kind": "classifier", "dataset": cfg.dataset,
            "architecture": classifiers.architecture_name(cfg.model), "model": cfg.model,
            "adversarially_trained": cfg.adv_train,
            "adv_train_eps": cfg.adv_train_eps if cfg.adv_train else None,
            "steps": step, "epochs": round(step / steps_per_epoch, 3),
            "wall_clock_seconds": round(wall_clock, 1), "metrics": metrics,
            "flags": dataclasses.asdict(cfg)})

    objects = {"classifier": trainer.classifier, "optimizer": trainer.optimizer}
    training.run(train_dir, objects, make_step_fn, cfg.epochs * steps_per_epoch,
                 log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every,
                 keep=cfg.keep_checkpoints, flags=dataclasses.asdict(cfg), on_export=on_export,
                 name="train_classifier", strategy=strategy)
