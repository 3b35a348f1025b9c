"""--mode=train_magnet: train MagNet's two auto-encoders (detector I / reformer, detector II)
on the clean training split; the export holds both, with each detector's threshold at
--magnet_fpr on the validation split in its manifest (kind "magnet")."""

import dataclasses

import numpy as np
import tensorflow as tf

from defense_gan import checkpoints, data, magnet, training
from defense_gan.config import Config


def run(cfg: Config) -> None:
    train_dir = cfg.resolved_train_dir()
    training.prepare_train_dir(train_dir, create=False)  # fail fast, leave nothing
    splits = data.load(cfg.dataset, cfg.data_source, cfg.data_dir, cfg.train_limit)
    model = magnet.build(splits.image_shape, cfg.seed)
    trainer = magnet.MagNetTrainer(model, cfg.magnet_noise, cfg.seed)
    train_step = tf.function(trainer.train_step)
    steps_per_epoch = len(splits.x_train) // cfg.magnet_batch_size
    x_val = data.to_float(splits.x_val).numpy()

    def make_step_fn(start_step):
        batches = iter(data.resumable_batches(splits.x_train, cfg.magnet_batch_size, cfg.seed,
                                              start_step))
        return lambda step: train_step(next(batches))

    def on_export(step, wall_clock):
        marks = magnet.detector_marks(model, x_val)
        thr = magnet.thresholds(marks, cfg.magnet_fpr)
        metrics = {"validation_mse_I": float(np.mean(marks["I"])),
                   "validation_mae_II": float(np.mean(marks["II"])),
                   "validation_images": len(x_val),
                   "validation_rejected_fraction": {
                       name: float(np.mean(marks[name] >= thr[name])) for name in thr}}
        checkpoints.export(f"{train_dir}/{training.EXPORT_SUBDIR}", model, {
            "kind": "magnet", "dataset": cfg.dataset, "architecture": magnet.ARCHITECTURE,
            "detectors": {"I": "auto-encoder I, mean squared error (p=2)",
                          "II": "auto-encoder II, mean absolute error (p=1)"},
            "reformer": "auto-encoder I", "thresholds": thr, "fpr": cfg.magnet_fpr,
            "steps": step, "epochs": round(step / steps_per_epoch, 3),
            "wall_clock_seconds": round(wall_clock, 1), "metrics": metrics,
            "training": "MSE to the clean image from inputs with Gaussian noise std %g "
                        "(clipped to [0, 1]), Adam 1e-3, batch %d, %s training images"
                        % (cfg.magnet_noise, cfg.magnet_batch_size, len(splits.x_train)),
            "flags": dataclasses.asdict(cfg)})

    objects = {"magnet": model, "opt_i": trainer.opt_i, "opt_ii": trainer.opt_ii,
               "rng": trainer.rng}
    training.run(train_dir, objects, make_step_fn, cfg.magnet_epochs * steps_per_epoch,
                 log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every,
                 keep=cfg.keep_checkpoints, flags=dataclasses.asdict(cfg), on_export=on_export,
                 name="train_magnet")
