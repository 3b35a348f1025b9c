"""--mode=whitebox: attack a (defended) classifier on the first --num_tests test images.

--defense none: the plain classifier; adv_tr: the adversarially trained one (at
--adv_train_eps); defense_gan: projection then the plain classifier (or the Rec classifier with
--rec_classifier), with the attacker's gradient chosen by --gradient; magnet: MagNet's
detectors and reformer, the attacker's gradient chosen by --magnet_gradient.
Writes results.json, per-batch records, examples.png into the run's folder (default
results/<dataset>/whitebox/<run>) and rebuilds the table index.md beside it (one row per run
folder; untracked, RESULTS.md is the curated table).
"""

import collections
import dataclasses
import os
import shlex
import sys

from defense_gan import (attacks, classifiers, data, evaluation, files, gan, hardware, magnet,
                         projection, results)
from defense_gan.checkpoints import environment
from defense_gan.config import DEFAULT_ADV_TRAIN_EPS, REPO_ROOT, Config, ConfigError
from defense_gan.defense import DefendedClassifier

# What a defense builder returns: the defense object (evaluation's interface), the attacker's
# model_fn, the clean-image cache (or None), the checkpoints it loaded, the precision it runs
# at, the attacker's gradient as results.json names it, and settings it adds to the run's.
Defense = collections.namedtuple("Defense", "defended model_fn cache checkpoints precision "
                                            "gradient settings")


def _defense_gan(cfg: Config, classifier, splits, results_dir) -> Defense:
    precision = hardware.resolve_precision(cfg.precision)  # float32 where bf16 is emulated
    generator, g_manifest = gan.load_generator(cfg.resolved_gan_dir(), cfg.dataset, precision)
    settings = projection.ProjectionSettings(cfg.rec_iters, cfg.rec_rr, cfg.rec_lr,
                                             batch_size=cfg.eval_batch_size,
                                             rec_prune_at=cfg.rec_prune_at,
                                             rec_keep=cfg.rec_keep)
    projector = projection.Projector(generator, splits.image_shape,
                                     int(g_manifest.get("latent_dim", 128)), settings)
    defended = DefendedClassifier(classifier, projector, cfg.seed)
    cache = evaluation.clean_cache(os.path.dirname(results_dir), g_manifest, settings,
                                   cfg.seed, precision)
    used = {"generator": {"folder": g_manifest["folder"], "sha256": g_manifest["files"],
                          "iterations": g_manifest.get("iterations")}}
    extra = {"classifier_variant": "rec"} if cfg.rec_classifier else {}
    return Defense(defended, defended.attack_model_fn(cfg.gradient), cache, used, precision,
                   cfg.gradient, extra)


def _magnet(cfg: Config, classifier, splits, results_dir) -> Defense:
    model, m_manifest = magnet.load(cfg.resolved_magnet_dir(), cfg.dataset, splits.image_shape)
    # Thresholds at --magnet_fpr on the clean validation split (MagNet's rule; a second).
    marks = magnet.detector_marks(model, data.to_float(splits.x_val).numpy())
    thresholds = magnet.thresholds(marks, cfg.magnet_fpr)
    defended = magnet.MagNetDefense(classifier, model, thresholds)
    used = {"magnet": {"folder": m_manifest["folder"], "sha256": m_manifest["files"],
                       "epochs": m_manifest.get("epochs")}}
    gradient = {"full": "full: the exact gradient of classifier(reformer(x))",
                "bpda": "bpda: reformer as the identity on the backward pass",
                "classifier": "classifier: the undefended classifier's gradient"}[
        cfg.magnet_gradient] + " (detectors not in the loss)"
    extra = {"gradient": cfg.magnet_gradient, "magnet_fpr": cfg.magnet_fpr,
             "magnet_thresholds": thresholds,
             "counting": "an adversarial input rejected by a detector counts as correct, a "
                         "rejected clean input as an error (MagNet's evaluation)"}
    return Defense(defended, defended.attack_model_fn(cfg.magnet_gradient), None, used,
                   cfg.precision, gradient, extra)


# --defense values that wrap the classifier in a defense object; the others (none, adv_tr)
# attack the loaded classifier itself.
DEFENSE_BUILDERS = {"defense_gan": _defense_gan, "magnet": _magnet}


ITERATIVE_ATTACKS = ("cw", "pgd")


def run_name(cfg: Config) -> str:
    name = f"{cfg.model}_{cfg.defense}"
    if cfg.defense == "adv_tr" and cfg.adv_train_eps != DEFAULT_ADV_TRAIN_EPS:
        name += f"{cfg.adv_train_eps:g}"
    if cfg.defense == "defense_gan":
        name += "_rec" if cfg.rec_classifier else ""
        name += f"_{cfg.gradient}_L{cfg.rec_iters}_R{cfg.rec_rr}"
        if cfg.rec_prune_at:
            name += f"_prune{cfg.rec_prune_at:g}k{cfg.rec_keep}"
    if cfg.defense == "magnet":
        name += f"_{cfg.magnet_gradient}_fpr{cfg.magnet_fpr:g}"
    eps = "" if cfg.attack == "cw" else f"_eps{cfg.fgsm_eps:g}"
    return f"{name}_{cfg.attack}{eps}_n{cfg.num_tests}" + (
        "_bf16" if cfg.precision == "bfloat16" else "")


def run(cfg: Config) -> None:
    splits = data.load(cfg.dataset, cfg.data_source, cfg.data_dir)
    if cfg.num_tests > len(splits.x_test):
        raise ConfigError(f"--num_tests: {cfg.num_tests} exceeds the {len(splits.x_test)} "
                          "test images")
    classifier, c_manifest = classifiers.load_classifier(
        cfg.resolved_classifier_dir(adv=cfg.defense == "adv_tr", rec=cfg.rec_classifier),
        cfg.dataset, cfg.model)
    results_dir = os.path.abspath(cfg.results_dir or os.path.join(REPO_ROOT, "results", cfg.dataset,
                                                  "whitebox", run_name(cfg)))
    checkpoints_used = {"classifier": {"folder": c_manifest["folder"],
                                       "sha256": c_manifest["files"]}}
    built = None
    if cfg.defense in DEFENSE_BUILDERS:
        built = DEFENSE_BUILDERS[cfg.defense](cfg, classifier, splits, results_dir)
        checkpoints_used.update(built.checkpoints)
    defended = built.defended if built else None
    cache = built.cache if built else None
    model_fn = built.model_fn if built else (lambda x: classifier(x, training=False))
    precision = built.precision if built else cfg.precision
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
    if cfg.defense == "adv_tr" and cfg.adv_train_eps != DEFAULT_ADV_TRAIN_EPS:
        run_settings["adv_train_eps"] = cfg.adv_train_eps
    if built:
        run_settings.update(built.settings)
    # Iterative attacks through BPDA see the defender's restarts at every step and can fit
    # them: their runs also report P(x_adv) under restarts the attacker never saw.
    fresh_seed = (cfg.defense == "defense_gan" and cfg.gradient == "bpda"
                  and cfg.attack in ITERATIVE_ATTACKS)
    if fresh_seed:
        run_settings["fresh_seed_check"] = True
    gradient = built.gradient if built else "the evaluated classifier's own gradient"
    # Checked after every checkpoint loaded, so a bad flag elsewhere creates no folder.
    problem = files.writable_dir_problem(results_dir)
    if problem:
        raise ConfigError(f"--results_dir: '{results_dir}' {problem}")
    print(f"[whitebox] {cfg.attack} on model {cfg.model}, defense {cfg.defense} "
          f"(attacker gradient: {gradient}), {cfg.num_tests} test images -> {results_dir}",
          flush=True)
    x_test = data.to_float(splits.x_test[:cfg.num_tests]).numpy()
    records, stats = evaluation.evaluate(
        x_test, splits.y_test[:cfg.num_tests], classifier=classifier, attack=attack,
        batch_size=cfg.eval_batch_size, seed=cfg.seed,
        records_dir=os.path.join(results_dir, "records"), settings=run_settings,
        defended=defended, cache=cache, fresh_seed=fresh_seed,
        progress=lambda line: print(line, flush=True))
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
    if rate and cfg.defense == "defense_gan":
        print(f"[whitebox] projection: {rate:.2f} images/s (L={cfg.rec_iters}, "
              f"R={cfg.rec_rr})", flush=True)
    print(f"[whitebox] wrote {results_dir}/results.json", flush=True)
