"""--mode=whitebox: attack a (defended) classifier on the first --num_tests test images.

--defense none: the plain classifier; adv_tr: the adversarially trained one; defense_gan:
projection then the plain classifier, with the attacker's gradient chosen by --gradient.
Writes results.json, per-batch records, examples.png into the run's folder (default
results/<dataset>/whitebox/<run>) and rebuilds the table index.md beside it (one row per run
folder; untracked, RESULTS.md is the curated table).
"""

import dataclasses
import os
import shlex
import sys

from defense_gan import (attacks, classifiers, data, distribute, evaluation, files, gan,
                         hardware, projection, results)
from defense_gan.checkpoints import environment
from defense_gan.config import REPO_ROOT, Config, ConfigError
from defense_gan.defense import DefendedClassifier


ITERATIVE_ATTACKS = ("cw", "pgd")


def run_name(cfg: Config) -> str:
    name = f"{cfg.model}_{cfg.defense}"
    if cfg.defense == "defense_gan":
        name += f"_{cfg.gradient}_L{cfg.rec_iters}_R{cfg.rec_rr}"
        if cfg.rec_prune_at:
            name += f"_prune{cfg.rec_prune_at:g}k{cfg.rec_keep}"
    eps = "" if cfg.attack == "cw" else f"_eps{cfg.fgsm_eps:g}"
    return f"{name}_{cfg.attack}{eps}_n{cfg.num_tests}" + (
        "_bf16" if cfg.precision == "bfloat16" else "")


def run(cfg: Config) -> None:
    shard_index, num_shards = distribute.eval_shard(cfg.strategy, cfg.shard_index,
                                                    cfg.num_shards)
    splits = data.load(cfg.dataset, cfg.data_source, cfg.data_dir)
    if cfg.num_tests > len(splits.x_test):
        raise ConfigError(f"--num_tests: {cfg.num_tests} exceeds the {len(splits.x_test)} "
                          "test images")
    classifier, c_manifest = classifiers.load_classifier(
        cfg.resolved_classifier_dir(adv=cfg.defense == "adv_tr"), cfg.dataset, cfg.model)
    results_dir = os.path.abspath(cfg.results_dir or os.path.join(REPO_ROOT, "results", cfg.dataset,
                                                  "whitebox", run_name(cfg)))
    checkpoints_used = {"classifier": {"folder": c_manifest["folder"],
                                       "sha256": c_manifest["files"]}}
    defended, cache = None, None
    model_fn = lambda x: classifier(x, training=False)  # noqa: E731
    precision = cfg.precision
    if cfg.defense == "defense_gan":
        precision = hardware.resolve_precision(cfg.precision)  # float32 where bf16 is emulated
        generator, g_manifest = gan.load_generator(cfg.resolved_gan_dir(), cfg.dataset,
                                                   precision)
        checkpoints_used["generator"] = {"folder": g_manifest["folder"],
                                         "sha256": g_manifest["files"],
                                         "iterations": g_manifest.get("iterations")}
        settings = projection.ProjectionSettings(cfg.rec_iters, cfg.rec_rr, cfg.rec_lr,
                                                 batch_size=cfg.eval_batch_size,
                                                 rec_prune_at=cfg.rec_prune_at,
                                                 rec_keep=cfg.rec_keep)
        projector = projection.Projector(generator, splits.image_shape,
                                         int(g_manifest.get("latent_dim", 128)), settings)
        defended = DefendedClassifier(classifier, projector, cfg.seed)
        model_fn = defended.attack_model_fn(cfg.gradient)
        cache = evaluation.clean_cache(os.path.dirname(results_dir), g_manifest, settings,
                                       cfg.seed, precision)
    attack = attacks.make_attack(cfg.attack, model_fn, eps=cfg.fgsm_eps, alpha=cfg.rand_alpha,
                                 pgd_steps=cfg.pgd_steps, cw_iters=cfg.cw_iters,
                                 cw_lr=cfg.cw_lr, cw_c=cfg.cw_c, seed=cfg.seed)
    run_settings = {
        "model": cfg.model, "attack": cfg.attack, "defense": cfg.defense,
        "gradient": cfg.gradient, "num_tests": cfg.num_tests, "seed": cfg.seed,
        "batch_size": cfg.eval_batch_size, "precision": precision,
        "attack_settings": attacks.describe(
            cfg.attack, eps=cfg.fgsm_eps, alpha=cfg.rand_alpha, pgd_steps=cfg.pgd_steps,
            cw_iters=cfg.cw_iters, cw_lr=cfg.cw_lr, cw_c=cfg.cw_c, seed=cfg.seed),
        "rec_iters": cfg.rec_iters, "rec_rr": cfg.rec_rr, "rec_lr": cfg.rec_lr,
        "checkpoints": checkpoints_used}
    if cfg.rec_prune_at:
        run_settings.update(rec_prune_at=cfg.rec_prune_at, rec_keep=cfg.rec_keep)
    # Iterative attacks through BPDA see the defender's restarts at every step and can fit
    # them: their runs also report P(x_adv) under restarts the attacker never saw.
    fresh_seed = (cfg.defense == "defense_gan" and cfg.gradient == "bpda"
                  and cfg.attack in ITERATIVE_ATTACKS)
    if fresh_seed:
        run_settings["fresh_seed_check"] = True
    gradient = (cfg.gradient if cfg.defense == "defense_gan" else
                "the evaluated classifier's own gradient")
    # Checked after every checkpoint loaded, so a bad flag elsewhere creates no folder.
    problem = files.writable_dir_problem(results_dir)
    if problem:
        raise ConfigError(f"--results_dir: '{results_dir}' {problem}")
    print(f"[whitebox] {cfg.attack} on model {cfg.model}, defense {cfg.defense} "
          f"(attacker gradient: {gradient}), {cfg.num_tests} test images -> {results_dir}",
          flush=True)
    x_test = data.to_float(splits.x_test[:cfg.num_tests]).numpy()
    records_dir = os.path.join(results_dir, "records")

    def evaluate(shard):
        return evaluation.evaluate(
            x_test, splits.y_test[:cfg.num_tests], classifier=classifier, attack=attack,
            batch_size=cfg.eval_batch_size, seed=cfg.seed, records_dir=records_dir,
            settings=run_settings, defended=defended, cache=cache, fresh_seed=fresh_seed,
            progress=lambda line: print(line, flush=True), shard=shard)
    if num_shards > 1:
        # Each shard computes batches k = shard_index (mod num_shards); batch k's records do
        # not depend on the process (images, seed [seed, k]), so shard 0 gathers them all and
        # results.json is the one-process run's.
        evaluate((shard_index, num_shards))
        if shard_index:
            print(f"[whitebox] shard {shard_index} of {num_shards} done; shard 0 writes "
                  f"{results_dir}/results.json when every shard is done", flush=True)
            return
        evaluation.wait_for_batches(records_dir, run_settings, cfg.num_tests,
                                    cfg.eval_batch_size, cfg.shard_timeout, num_shards,
                                    progress=lambda line: print(line, flush=True))
    records, stats = evaluate((0, 1))  # with shards: every batch is read from its records
    metrics = results.summarize(records, cfg.defense)
    if stats["batches_resumed"] * cfg.eval_batch_size >= cfg.num_tests and \
            results.load(results_dir).get("settings") == run_settings:
        # Nothing computed: keep the results.json of the process that finished the run (its
        # timing and environment), so rerunning a finished script changes no file.
        print(f"[whitebox] every batch was already done; kept {results_dir}/results.json "
              f"(adversarial_accuracy {metrics['adversarial_accuracy']:.4f})", flush=True)
        return
    rate = (stats["projected_images"] / stats["projection_seconds"]
            if stats["projection_seconds"] else None)
    result = {"settings": run_settings, "metrics": metrics, "images_per_second": rate,
              "timing": stats, "gradient_mode": gradient,  # timing: all batches, resumed too
              "command": "python main.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
              "flags": dataclasses.asdict(cfg)}
    result["environment"] = environment()
    results.write(results_dir, result,
                  evaluation.load_example_images(os.path.join(results_dir, "records")))
    shown = {k: v for k, v in metrics.items() if v is not None}
    print("[whitebox] " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                    for k, v in shown.items()), flush=True)
    if rate:
        print(f"[whitebox] projection: {rate:.2f} images/s (L={cfg.rec_iters}, "
              f"R={cfg.rec_rr})", flush=True)
    print(f"[whitebox] wrote {results_dir}/results.json", flush=True)
