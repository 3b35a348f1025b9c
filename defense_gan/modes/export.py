"""--mode=export: a SavedModel of the defended classifier (signatures purify,
reconstruction_error, classify; see savedmodel.py) for --dataset, from the shipped generator and
classifier --model (or --gan_dir / --classifier_dir), with the projection flags (--rec_iters,
--rec_rr, --rec_lr, --eval_batch_size as the chunk size, --precision, --rec_prune_at /
--rec_keep). Written atomically to --export_dir (default exports/<dataset>).

    python main.py --mode=export --model=F              # -> exports/mnist/
    python -c "import tensorflow as tf; m = tf.saved_model.load('exports/mnist'); \\
               print(m.signatures['classify'](images=x, seed=tf.constant(0)))"
"""

import os

from defense_gan import classifiers, files, gan, hardware, savedmodel
from defense_gan.config import REPO_ROOT, Config, ConfigError
from defense_gan.purifier import Purifier


def run(cfg: Config) -> None:
    precision = hardware.resolve_precision(cfg.precision)
    classifier, c_manifest = classifiers.load_classifier(
        cfg.resolved_classifier_dir(), cfg.dataset, cfg.model, precision)
    generator, g_manifest = gan.load_generator(cfg.resolved_gan_dir(), cfg.dataset, precision)
    purifier = Purifier(generator, cfg.rec_iters, cfg.rec_rr, cfg.rec_lr, seed=cfg.seed,
                        batch_size=cfg.eval_batch_size, rec_prune_at=cfg.rec_prune_at,
                        rec_keep=cfg.rec_keep)
    folder = os.path.abspath(cfg.export_dir or os.path.join(REPO_ROOT, "exports", cfg.dataset))
    problem = files.writable_dir_problem(os.path.dirname(folder))
    if problem:
        raise ConfigError(f"--export_dir: '{os.path.dirname(folder)}' {problem}")
    print(f"[export] {cfg.dataset}: classifier {c_manifest.get('architecture')}, generator "
          f"{g_manifest.get('iterations')} iterations, L={cfg.rec_iters}, R={cfg.rec_rr}, "
          f"chunks of {cfg.eval_batch_size} -> {folder}", flush=True)
    savedmodel.save(folder, purifier, classifier, {
        "dataset": cfg.dataset, "model": cfg.model,
        "checkpoints": {
            "generator": {"folder": g_manifest["folder"], "sha256": g_manifest["files"],
                          "iterations": g_manifest.get("iterations")},
            "classifier": {"folder": c_manifest["folder"], "sha256": c_manifest["files"]}}})
    print(f"[export] wrote {folder} (signatures: {', '.join(savedmodel.SIGNATURES)})",
          flush=True)
