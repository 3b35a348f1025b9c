"""--mode=whitebox: attack a (defended) classifier on the first --num_tests test images.

--defense none: the plain classifier; adv_tr: the adversarially trained one (at
--adv_train_eps); defense_gan: projection then the plain classifier (or the Rec classifier with
--rec_classifier), with the attacker's gradient chosen by --gradient; magnet: MagNet's
detectors and reformer, the attacker's gradient chosen by --magnet_gradient.
Writes results.json, per-batch records, examples.png into the run's folder (default
results/<dataset>/whitebox/<run>) and rebuilds the table index.md beside it (one row per run
folder; untracked, RESULTS.md is the curated table).

Adaptive attacks (issue 16): --eot_samples (BPDA + EOT), --gradient=unrolled, PGD L-inf/L2
with restarts, --attack=latent; the attack's own projections may be cheaper
(--attack_rec_iters/--attack_rec_rr/--attack_precision) while the evaluation keeps the flags'
projection, and results.json's `attacker_knowledge` says what the attacker knew.
--sweep_eps runs the attack once per budget (sub-folders eps<e>/) and writes sweep.json and
sweep.png (accuracy vs eps) in the run folder.
"""

import collections
import dataclasses
import os
import shlex
import sys

from defense_gan import (attacks, data, dataset_spec, distribute, evaluation, files, gan,
                         hardware, magnet, plots, predictors, projection, rec_cache, results)
from defense_gan.config import REPO_ROOT, Config, ConfigError, l2_budget
from defense_gan.defense import DefendedClassifier

# What a defense builder returns: the defense object (evaluation's interface), the attacker's
# model_fn, the clean-image cache (or None), the checkpoints it loaded, the precision it runs
# at, the attacker's gradient as results.json names it, and settings it adds to the run's.
Defense = collections.namedtuple("Defense", "defended model_fn cache checkpoints precision "
                                            "gradient settings latent knowledge")


def _defense_gan(cfg: Config, classifier, splits, results_dir) -> Defense:
    precision = hardware.resolve_precision(cfg.precision)  # float32 where bf16 is emulated
    generator, g_manifest = gan.load_generator(cfg.resolved_gan_dir(), cfg.dataset, precision)
    settings = projection.ProjectionSettings(cfg.rec_iters, cfg.rec_rr, cfg.rec_lr,
                                             batch_size=cfg.eval_batch_size,
                                             rec_prune_at=cfg.rec_prune_at,
                                             rec_keep=cfg.rec_keep)
    latent_dim = int(g_manifest.get("latent_dim", 128))
    projector = projection.Projector(generator, splits.image_shape, latent_dim, settings)
    # The attack's own projections may be cheaper than the evaluated one (issue 16).
    evaluated = (cfg.rec_iters, cfg.rec_rr, precision)
    a_iters, a_rr, a_precision = attack_projection(cfg)
    a_precision = (precision if cfg.attack_precision is None
                   else hardware.resolve_precision(a_precision))
    attack_proj = (a_iters, a_rr, a_precision)
    attack_projector = projector
    # A cheaper attack projection never prunes restarts (--rec_prune_at), and neither does the
    # unrolled gradient's: it replays all R restarts for L steps, so its forward pass must too.
    if attack_proj != evaluated or (cfg.gradient == "unrolled" and cfg.rec_prune_at):
        a_generator = generator if a_precision == precision else gan.load_generator(
            cfg.resolved_gan_dir(), cfg.dataset, a_precision)[0]
        a_settings = dataclasses.replace(settings, rec_iters=a_iters, rec_rr=a_rr,
                                         rec_prune_at=0.0)
        attack_projector = projection.Projector(a_generator, splits.image_shape, latent_dim,
                                                a_settings)
    if cfg.gradient == "unrolled" and cfg.attack != "latent":
        check_unrolled_memory(cfg, attack_projector, splits.image_shape)
    defended = DefendedClassifier(classifier, projector, cfg.seed,
                                  attack_projector=attack_projector,
                                  eot_samples=cfg.eot_samples)
    latent = None
    if cfg.attack == "latent":
        latent = (attacks.LatentAttack(attack_projector.generator, classifier,
                                       iters=cfg.latent_iters, lr=cfg.latent_lr,
                                       c=cfg.latent_c,
                                       clip_min=dataset_spec.get(cfg.dataset).clip_min,
                                       clip_max=dataset_spec.get(cfg.dataset).clip_max),
                  defended.latent_start)
    cache = rec_cache.clean_cache(os.path.dirname(results_dir), g_manifest, settings,
                                   cfg.seed, precision)
    used = {"generator": {"folder": g_manifest["folder"], "sha256": g_manifest["files"],
                          "iterations": g_manifest.get("iterations")}}
    extra = {}
    knowledge = attacker_knowledge(cfg, attack_proj, evaluated)
    if (attack_proj != evaluated or cfg.eot_samples or cfg.gradient == "unrolled"
            or cfg.attack == "latent"):
        # Only adaptive runs carry these keys, so older runs' fingerprints stay valid.
        extra.update(attacker_knowledge=knowledge, eot_samples=cfg.eot_samples)
    return Defense(defended, defended.attack_model_fn(cfg.gradient), cache, used, precision,
                   cfg.gradient, extra, latent, knowledge)


def _magnet(cfg: Config, classifier, splits, results_dir) -> Defense:
    defended, used, extra = magnet.build_defense(
        classifier, cfg.resolved_magnet_dir(), cfg.dataset, splits.image_shape,
        data.to_float(splits.x_val).numpy(), cfg.magnet_fpr)
    gradient = {"full": "full: the exact gradient of classifier(reformer(x))",
                "bpda": "bpda: reformer as the identity on the backward pass",
                "classifier": "classifier: the undefended classifier's gradient"}[
        cfg.magnet_gradient] + " (detectors not in the loss)"
    extra = {"gradient": cfg.magnet_gradient, **extra}
    knowledge = {"gradient": cfg.magnet_gradient, "classifier_weights": True,
                 "magnet_weights": True, "summary": gradient}
    return Defense(defended, defended.attack_model_fn(cfg.magnet_gradient), None, used,
                   cfg.precision, gradient, extra, None, knowledge)


# --defense values that wrap the classifier in a defense object; the others (none, adv_tr)
# attack the loaded classifier itself.
DEFENSE_BUILDERS = {"defense_gan": _defense_gan, "magnet": _magnet}


ITERATIVE_ATTACKS = ("cw", "pgd", "latent")


def run_name(cfg: Config) -> str:
    """The default run folder name; settings at their defaults add nothing, so the names of
    runs made before an option existed are unchanged."""
    name = f"{cfg.model}_{cfg.defense}{predictors.classifier_tag(cfg)}"
    if cfg.defense == "defense_gan":
        name += f"_{cfg.gradient}"
        if cfg.eot_samples is not None:
            name += f"_eot{cfg.eot_samples}"
        name += f"_L{cfg.rec_iters}_R{cfg.rec_rr}"
        if cfg.rec_prune_at:
            name += f"_prune{cfg.rec_prune_at:g}k{cfg.rec_keep}"
        attack_proj = attack_projection(cfg)
        if attack_proj != (cfg.rec_iters, cfg.rec_rr, cfg.precision):
            name += f"_atkL{attack_proj[0]}R{attack_proj[1]}" + (
                "bf16" if attack_proj[2] == "bfloat16" else "")
    if cfg.defense == "magnet":
        name += f"_{cfg.magnet_gradient}_fpr{cfg.magnet_fpr:g}"
    if cfg.attack in ("cw", "latent"):
        eps = ""
    elif l2_budget(cfg):
        eps = f"_l2eps{cfg.pgd_eps_l2:g}"
    else:
        eps = f"_eps{cfg.fgsm_eps:g}"
    if cfg.attack == "pgd":
        if cfg.pgd_steps != 40 or cfg.pgd_step_size is not None:
            eps += f"_steps{cfg.pgd_steps}" + (
                "" if cfg.pgd_step_size is None else f"_step{cfg.pgd_step_size:g}")
        if cfg.pgd_restarts != 1:
            eps += f"_restarts{cfg.pgd_restarts}"
    if cfg.sweep_eps:  # an L-inf and an L2 sweep of the same attack must not share a folder
        eps = "_l2sweep" if l2_budget(cfg) else "_sweep"
    if cfg.attack_labels != "auto" and attack_labels(cfg) != attack_labels(
            dataclasses.replace(cfg, attack_labels="auto")):
        eps += "_ytrue" if attack_labels(cfg) == "true" else "_ypred"
    return f"{name}_{cfg.attack}{eps}_n{cfg.num_tests}" + (
        "_bf16" if cfg.precision == "bfloat16" else "")


# --attack_labels=auto: the adaptive attacks (issue 16) move away from the true label, as
# robust-accuracy evaluations do; the paper's attacks keep the release's (CleverHans') default,
# the model's own prediction.
TRUE_LABEL_ATTACKS = ("pgd", "latent")


def attack_labels(cfg: Config) -> str:
    """'true' or 'predicted': the labels the attack moves away from (--attack_labels)."""
    if cfg.attack_labels != "auto":
        return cfg.attack_labels
    return "true" if cfg.attack in TRUE_LABEL_ATTACKS else "predicted"


def attack_projection(cfg: Config) -> tuple:
    """(L, R, precision) of the projections inside the attack."""
    return (cfg.attack_rec_iters or cfg.rec_iters, cfg.attack_rec_rr or cfg.rec_rr,
            cfg.attack_precision or cfg.precision)


def attacker_knowledge(cfg: Config, attack_proj: tuple, evaluated: tuple) -> dict:
    """What the attacker knew, in words and settings, for results.json."""
    gradient = cfg.gradient if cfg.defense == "defense_gan" else "exact"
    out = {"gradient": gradient, "classifier_weights": True}
    if cfg.defense != "defense_gan":
        out["summary"] = "the evaluated classifier and its exact gradient (no projection)"
        return out
    out.update(generator_weights=True, attack_projection={
        "rec_iters": attack_proj[0], "rec_rr": attack_proj[1], "precision": attack_proj[2]},
        evaluated_projection={"rec_iters": evaluated[0], "rec_rr": evaluated[1],
                              "precision": evaluated[2]})
    if cfg.attack == "latent":
        out["projection_seeds"] = ("none of the defender's: z0 from the attack projection with "
                                   "a seed (seed, -(1 + k * 2**16)) the evaluation never uses")
        out["summary"] = ("generator and classifier; searches z directly (no gradient through "
                          "the projection); the defender's restarts unknown")
    elif cfg.gradient == "classifier":
        out["projection_seeds"] = "not used: the attack ignores the projection"
        out["summary"] = "the undefended classifier's gradient only"
    elif cfg.eot_samples is not None:
        out["projection_seeds"] = (f"{cfg.eot_samples} fresh draws per attack step, seeds "
                                   "(seed, -(1 + k * 2**16 + i)); the defender's evaluation "
                                   "seeds (seed, k) and (seed, k + 2**20) were never used")
        out["summary"] = (f"BPDA + EOT over {cfg.eot_samples} projections per step; the "
                          "defender's restarts unknown, so adversarial_accuracy and "
                          "adversarial_accuracy_fresh_seed are both unseen-seed accuracies")
    else:
        out["projection_seeds"] = ("the defender's own seed (seed, k) of each batch: the "
                                   "attacker knew the restarts of adversarial_accuracy; "
                                   "adversarial_accuracy_fresh_seed uses restarts it never saw"
                                   if cfg.attack in ITERATIVE_ATTACKS else
                                   "the defender's own seed (seed, k) of each batch")
        out["summary"] = (("exact gradient through all L projection steps"
                           if cfg.gradient == "unrolled" else
                           "BPDA (identity backward through the projection)") +
                          " with the defender's restarts known")
    if attack_proj != evaluated:
        out["summary"] += ("; the attack's projections were cheaper than the evaluated one "
                           f"(L={attack_proj[0]}, R={attack_proj[1]}, {attack_proj[2]})")
    return out


def run(cfg: Config) -> None:
    if cfg.sweep_eps:
        return run_sweep(cfg)
    run_one(cfg)


def sweep_configs(cfg: Config, results_dir: str) -> list:
    """(eps, Config) per budget of --sweep_eps: fgsm_eps, or pgd_eps_l2 for PGD L2; each run
    in <results_dir>/eps<eps>."""
    from defense_gan.config import parse_sweep_eps
    values = parse_sweep_eps(cfg.sweep_eps, l2=l2_budget(cfg))
    if cfg.attack in ("cw", "latent"):
        raise ConfigError(f"--sweep_eps: --attack={cfg.attack} has no budget to sweep")
    if cfg.attack == "rand_fgsm" and min(values) <= cfg.rand_alpha:
        raise ConfigError(f"--sweep_eps: every eps must exceed --rand_alpha ({cfg.rand_alpha}) "
                          f"for rand_fgsm, got {min(values)}")
    field = "pgd_eps_l2" if l2_budget(cfg) else "fgsm_eps"
    return [(e, dataclasses.replace(cfg, sweep_eps="", **{field: e},
                                    results_dir=os.path.join(results_dir, f"eps{e:g}")))
            for e in values]


def run_sweep(cfg: Config) -> None:
    """Accuracy vs eps: one run per budget, then sweep.json and sweep.png in the run folder."""
    results_dir = os.path.abspath(cfg.results_dir or os.path.join(
        REPO_ROOT, "results", cfg.dataset, "whitebox", run_name(cfg)))
    configs = sweep_configs(cfg, results_dir)  # validates before anything is written
    problem = files.writable_dir_problem(results_dir)
    if problem:
        raise ConfigError(f"--results_dir: '{results_dir}' {problem}")
    points = []
    for eps, sub in configs:
        print(f"[whitebox] sweep: eps {eps:g}", flush=True)
        run_one(sub)
        points.append({"eps": eps, **results.load(sub.results_dir)["metrics"]})
    label = plots.curve_label(dataclasses.asdict(cfg))
    sweep = {"norm": "l2" if l2_budget(cfg) else "linf",
             "label": label, "attack": cfg.attack, "model": cfg.model, "defense": cfg.defense,
             "gradient": cfg.gradient if cfg.defense == "defense_gan" else None,
             "eot_samples": cfg.eot_samples, "points": points,
             "command": "python main.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
             "flags": dataclasses.asdict(cfg)}
    files.write_json_atomic(os.path.join(results_dir, "sweep.json"), sweep)
    plots.plot_curves(os.path.join(results_dir, "sweep.png"), [sweep],
                        f"model {cfg.model}, {cfg.attack}")
    print(f"[whitebox] wrote {results_dir}/sweep.json and sweep.png: " + ", ".join(
        f"eps {p['eps']:g}: {p['adversarial_accuracy']:.3f}" for p in points), flush=True)


def run_one(cfg: Config) -> None:
    spec = dataset_spec.get(cfg.dataset)
    shard_index, num_shards = distribute.eval_shard(cfg.strategy, cfg.shard_index,
                                                    cfg.num_shards)
    splits = data.load(cfg.dataset, cfg.data_source, cfg.data_dir)
    if cfg.num_tests > len(splits.x_test):
        raise ConfigError(f"--num_tests: {cfg.num_tests} exceeds the {len(splits.x_test)} "
                          "test images")
    classifier, c_manifest = predictors.evaluated_classifier(cfg)
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
    attack_kwargs = dict(eps=cfg.fgsm_eps, alpha=cfg.rand_alpha, pgd_steps=cfg.pgd_steps,
                         pgd_norm=cfg.pgd_norm, pgd_step_size=cfg.pgd_step_size,
                         pgd_restarts=cfg.pgd_restarts, pgd_eps_l2=cfg.pgd_eps_l2,
                         cw_iters=cfg.cw_iters, cw_lr=cfg.cw_lr, cw_c=cfg.cw_c,
                         latent_iters=cfg.latent_iters, latent_lr=cfg.latent_lr,
                         latent_c=cfg.latent_c, seed=cfg.seed, labels=attack_labels(cfg),
                         clip_min=spec.clip_min, clip_max=spec.clip_max)
    attack = attacks.make_attack(cfg.attack, model_fn, latent=built.latent if built else None,
                                 **attack_kwargs)
    run_settings = {
        "model": cfg.model, "attack": cfg.attack, "defense": cfg.defense,
        "gradient": cfg.gradient, "num_tests": cfg.num_tests, "seed": cfg.seed,
        "batch_size": cfg.eval_batch_size, "precision": precision,
        "attack_settings": attack.settings,
        "rec_iters": cfg.rec_iters, "rec_rr": cfg.rec_rr, "rec_lr": cfg.rec_lr,
        "checkpoints": checkpoints_used}
    if cfg.rec_prune_at:
        run_settings.update(rec_prune_at=cfg.rec_prune_at, rec_keep=cfg.rec_keep)
    run_settings.update(predictors.classifier_settings(cfg))
    if built:
        run_settings.update(built.settings)
    # Iterative attacks through BPDA see the defender's restarts at every step and can fit
    # them: their runs also report P(x_adv) under restarts the attacker never saw.
    fresh_seed = (cfg.defense == "defense_gan" and cfg.gradient != "classifier"
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
    x_test = data.to_float(splits.x_test[:cfg.num_tests], spec.pixel_range).numpy()
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
    if results.finished_unchanged(results_dir, stats, cfg.eval_batch_size, cfg.num_tests,
                                  run_settings):
        print(f"[whitebox] every batch was already done; kept {results_dir}/results.json "
              f"(adversarial_accuracy {metrics['adversarial_accuracy']:.4f})", flush=True)
        return
    result = results.run_result(run_settings, metrics, stats, dataclasses.asdict(cfg), sys.argv)
    result["gradient_mode"] = gradient
    result["attacker_knowledge"] = (built.knowledge if built else
                                    attacker_knowledge(cfg, None, None))
    rate = result["images_per_second"]
    results.write(results_dir, result,
                  evaluation.load_example_images(os.path.join(results_dir, "records")),
                  spec.pixel_range)
    shown = {k: v for k, v in metrics.items() if v is not None}
    print("[whitebox] " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                    for k, v in shown.items()), flush=True)
    if rate and cfg.defense == "defense_gan":
        print(f"[whitebox] projection: {rate:.2f} images/s (L={cfg.rec_iters}, "
              f"R={cfg.rec_rr})", flush=True)
    print(f"[whitebox] wrote {results_dir}/results.json", flush=True)


def check_unrolled_memory(cfg: Config, attack_projector, image_shape) -> None:
    """Refuse, before anything is allocated, an unrolled L whose tape would not fit in
    --unrolled_memory_gib (estimate: projection.unrolled_memory_bytes)."""
    st = attack_projector.settings
    need = projection.unrolled_memory_bytes(attack_projector.generator, image_shape,
                                            st.batch_size, st.rec_rr, st.rec_iters)
    if need > cfg.unrolled_memory_gib * 2 ** 30:
        fits = projection.largest_unrolled_steps(attack_projector.generator, image_shape,
                                                 st.batch_size, st.rec_rr,
                                                 cfg.unrolled_memory_gib)
        flag = "attack_rec_iters" if cfg.attack_rec_iters else "rec_iters"
        raise ConfigError(
            f"--{flag}: --gradient=unrolled through L={st.rec_iters} steps of "
            f"{st.batch_size} images x R={st.rec_rr} needs about {need / 2 ** 30:.1f} GiB, "
            f"more than --unrolled_memory_gib={cfg.unrolled_memory_gib:g}; the largest L that "
            f"fits is {fits} (use --attack_rec_iters, a smaller --eval_batch_size or "
            f"--attack_rec_rr)")
