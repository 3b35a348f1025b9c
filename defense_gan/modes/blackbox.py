"""--mode=blackbox: the substitute-model attack of Papernot et al. (2017) as the authors'
release ran it (its blackbox.py, after CleverHans' MNIST black-box tutorial).

The oracle is `--model` behind `--defense`: none, adv_tr (the classifier adversarially trained
at --adv_train_eps), defense_gan (with the plain classifier, Defense-GAN-Orig, or the one
trained on reconstructions with --rec_classifier, Defense-GAN-Rec) or magnet (MagNet's
reformer and detectors at --magnet_fpr, counted as MagNet counts). The attacker holds
test[0:--sub_init_size] with their true labels, trains the substitute `--sub_model` for
--sub_rounds rounds of --sub_epochs epochs, doubling its points by Jacobian augmentation
(--sub_lambda) between rounds and asking the oracle for the labels (only) of the new points;
then crafts FGSM
(--fgsm_eps) on the substitute for the --num_tests test images after the initial ones and
hands them to the defense, evaluated with the flags' projection (L=200, R=10 by default).

Who labels the substitute (--blackbox_labels):
  defended (default, the release's quirk): the evaluated classifier (the adversarially
    trained one for adv_tr) behind the Defense-GAN projection, whatever --defense is: the
    release labels with `model(gan.reconstruct(x))` in every case, so its "no defense" and
    "adversarial training" columns were attacked by a substitute of the Defense-GAN-defended
    model. The projection of these queries may be cheaper (--oracle_rec_iters, ...).
  target: the evaluated defense itself (a MagNet oracle answers the label of the reformed
    input: labels only, no "rejected").
  release_untrained (--defense=none or adv_tr): as defended, but the projection's generator
    is randomly initialised (seeded by --seed), never trained. This is what the release's
    code runs for those two defenses, on our reading: its blackbox() opens a new tf.Session
    for them, and CleverHans' model_train(init_all=False) initialises every variable that
    session has not seen, the loaded generator's included. A diagnostic of the paper's No
    defense / Adv. Tr. columns; such runs stay out of the tables.

The substitute depends only on its settings and oracle, so it is kept in
<results parent>/.substitutes/<fingerprint>/ and shared (e.g. by --defense=none and
--defense=defense_gan with the default labels); every round and every batch of oracle labels
is saved there as it finishes, and the evaluation records per batch in the run's folder, so
a killed run resumes where it stopped. A finished run (results.json with the same flags and
checkpoints) is kept without training anything, also on a machine without that state. Writes
results.json, records/, adversarial.npz (the adversarial test images for the detection mode),
examples.png and logs/.
"""

import dataclasses
import io
import os
import sys

import keras
import numpy as np
import tensorflow as tf

from defense_gan import (attacks, checkpoints, data, evaluation, files, gan, hardware, magnet,
                         networks, predictors, rec_cache, results, stats, substitute,
                         summaries)
from defense_gan.config import REPO_ROOT, Config, ConfigError
from defense_gan.defense import DefendedClassifier

# Oracle batch k of the points made after round r projects with seed [seed, base + r * 4096 +
# k]: never an evaluation seed [seed, k] nor a fresh-seed one [seed, (1 << 20) + k].
ORACLE_SEED_BASE = 1 << 21
ADVERSARIAL_FILE = "adversarial.npz"
# The paper's substitute settings; run names mention only the ones that differ.
PAPER_SUBSTITUTE = {"sub_rounds": 6, "sub_epochs": 10, "sub_lambda": 0.1, "sub_init_size": 150}
LABEL_QUIRK = ("as the authors' release: the substitute's new points are labelled by the "
               "evaluated classifier behind the Defense-GAN projection whatever --defense is "
               "(blackbox.py labels with model(gan.reconstruct(x)) in every case)")


UNTRAINED_QUIRK = ("as the release ran --defense=none and adv_tr: the substitute's new points "
                   "are labelled by the evaluated classifier behind a projection onto a "
                   "randomly initialised, untrained generator (blackbox() opens a new "
                   "tf.Session and model_train(init_all=False) initialises the generator's "
                   "variables in it)")


def labelling_defense(cfg: Config) -> str:
    """The defense whose answers label the substitute's points (see the module docstring)."""
    return "defense_gan" if cfg.blackbox_labels in ("defended", "release_untrained") \
        else cfg.defense


def run_name(cfg: Config) -> str:
    name = f"{cfg.model}_{cfg.defense}{predictors.classifier_tag(cfg)}_sub{cfg.sub_model}"
    if cfg.defense == "magnet":
        name += f"_fpr{cfg.magnet_fpr:g}"
    if cfg.defense == "defense_gan":
        name += f"_L{cfg.rec_iters}_R{cfg.rec_rr}"
        if cfg.rec_prune_at:
            name += f"_prune{cfg.rec_prune_at:g}k{cfg.rec_keep}"
    if cfg.blackbox_labels != "defended":
        name += f"_{cfg.blackbox_labels}labels"
    if labelling_defense(cfg) == "defense_gan":
        o = cfg.oracle_projection()
        name += f"_oracleL{o['rec_iters']}R{o['rec_rr']}"
        if o["rec_prune_at"]:
            name += f"_prune{o['rec_prune_at']:g}k{cfg.rec_keep}"
        if o["precision"] == "bfloat16":
            name += "_bf16"
    for flag, default in PAPER_SUBSTITUTE.items():
        if getattr(cfg, flag) != default:
            name += f"_{flag[4:]}{getattr(cfg, flag):g}"
    if cfg.sub_augmentation != "fixed":
        name += f"_aug{cfg.sub_augmentation}"
    return f"{name}_eps{cfg.fgsm_eps:g}_n{cfg.num_tests}" + (
        "_bf16" if cfg.precision == "bfloat16" and cfg.defense == "defense_gan" else "")


def _check_test_images(cfg: Config, available: int) -> None:
    need = cfg.sub_init_size + cfg.num_tests
    if need > available:
        raise ConfigError(
            f"--num_tests: blackbox needs --sub_init_size ({cfg.sub_init_size}) + --num_tests "
            f"({cfg.num_tests}) = {need} test images but the test set has {available}; use "
            f"--num_tests <= {max(available - cfg.sub_init_size, 0)}")


def _adversarial_images(attack, x, batch_size):
    """attack over x (float32 [N, ...]) in the fixed batches `evaluation.evaluate` uses (the
    same padded batches, hence the same images it evaluates)."""
    from defense_gan.projection import pad_batch
    out = []
    for lo in range(0, len(x), batch_size):
        count = min(batch_size, len(x) - lo)
        out.append(attack(tf.constant(pad_batch(x[lo:lo + count], batch_size))).numpy()[:count])
    return np.concatenate(out)


def save_adversarial(path: str, x_adv, labels, indices) -> None:
    """adversarial.npz: x_adv float32 [N, 28, 28, 1] in [0, 1], labels int64 [N] (true
    labels), indices int64 [N] (test-set indices). Kept as it is when it already holds the
    same arrays, so rerunning a finished run changes no file."""
    arrays = {"x_adv": np.asarray(x_adv, np.float32), "labels": np.asarray(labels, np.int64),
              "indices": np.asarray(indices, np.int64)}
    if os.path.isfile(path):
        with np.load(path) as f:
            if set(f.files) == set(arrays) and all(np.array_equal(f[k], v)
                                                   for k, v in arrays.items()):
                return
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    files.write_bytes_atomic(path, buf.getvalue())


def _with_interval(history, n):
    for info in history:
        correct = int(round(info["substitute_accuracy"] * n))
        info["substitute_accuracy_n"] = n
        info["substitute_accuracy_ci95"] = list(stats.wilson_interval(correct, n))
    return history


def new_substitute(model_name: str, seed: int) -> keras.Model:
    """Substitute `model_name` with its initial weights drawn from `seed` (Keras' global seed,
    as the classifiers' trainer does), so a substitute can be rebuilt from scratch on another
    machine, not only resumed from its saved rounds. (Substitutes made before this was seeded
    keep their saved rounds: the seed is already part of their tag.)"""
    keras.utils.set_random_seed(seed)
    return networks.build(networks.Classifier(model_name), networks.MNIST_SHAPE)


def run(cfg: Config) -> None:
    splits = data.load(cfg.dataset, cfg.data_source, cfg.data_dir)
    _check_test_images(cfg, len(splits.x_test))
    first, last = cfg.sub_init_size, cfg.sub_init_size + cfg.num_tests
    classifier, c_manifest = predictors.evaluated_classifier(cfg)
    label_defense = labelling_defense(cfg)
    checkpoints_used = {"classifier": predictors.checkpoint_entry(c_manifest)}
    defended, cache, precision, generator = None, None, cfg.precision, None
    results_dir = os.path.abspath(cfg.results_dir or os.path.join(
        REPO_ROOT, "results", cfg.dataset, "blackbox", run_name(cfg)))
    parent = os.path.dirname(results_dir)
    if cfg.defense == "defense_gan":
        settings = predictors.projection_settings(cfg, cfg.rec_iters, cfg.rec_rr,
                                                  cfg.rec_prune_at)
        projector, g_manifest, precision = predictors.load_projector(cfg, settings,
                                                                     cfg.precision)
        checkpoints_used["generator"] = predictors.checkpoint_entry(
            g_manifest, iterations=g_manifest.get("iterations"))
        generator = (projector.generator, g_manifest, precision)
        defended = DefendedClassifier(classifier, projector, cfg.seed)
        cache = rec_cache.clean_cache(parent, g_manifest, settings, cfg.seed, precision,
                                       first_index=first)
    defense_settings = {}
    if cfg.defense == "magnet":
        defended, used, defense_settings = magnet.build_defense(
            classifier, cfg.resolved_magnet_dir(), cfg.dataset, splits.image_shape,
            data.to_float(splits.x_val).numpy(), cfg.magnet_fpr)
        checkpoints_used.update(used)
    oracle_generator = generator
    if cfg.blackbox_labels == "release_untrained":
        oracle_precision = hardware.resolve_precision(cfg.oracle_projection()["precision"])
        oracle_generator = (*gan.untrained_generator(cfg.dataset, oracle_precision, cfg.seed,
                                                     cfg.latent_dim), oracle_precision)
    oracle = predictors.batch_predictor(cfg, label_defense, cfg.oracle_projection(),
                                        predictors.Loaded(
                                            classifier=(classifier, c_manifest),
                                            magnet=(defended, used, defense_settings)
                                            if cfg.defense == "magnet" else None,
                                            generator=oracle_generator))
    # Checked after every checkpoint loaded, so a bad flag elsewhere creates no folder.
    problem = files.writable_dir_problem(results_dir)
    if problem:
        raise ConfigError(f"--results_dir: '{results_dir}' {problem}")

    previous = _finished_run(results_dir, cfg, checkpoints_used, oracle.checkpoints)
    if previous:
        print(f"[blackbox] finished: {results_dir}/results.json was written with these flags "
              f"and checkpoints (adversarial_accuracy {_accuracy_text(previous['metrics'])}); "
              f"kept, nothing trained or projected (delete it to rerun)", flush=True)
        return

    # --- the substitute ------------------------------------------------------------------------
    sub = new_substitute(cfg.sub_model, cfg.seed)
    sub_settings = {
        "dataset": cfg.dataset, "model": cfg.sub_model, "epochs": cfg.sub_epochs,
        "lambda": cfg.sub_lambda, "initial_points": f"test[0:{first}]",
        "initial_labels": "true labels (as the release and CleverHans' tutorial)",
        "learning_rate": cfg.classifier_lr, "batch_size": cfg.batch_size, "seed": cfg.seed,
        "optimizer": "Adam, a fresh one per round (as CleverHans' model_train)",
        "oracle": oracle.settings, "oracle_checkpoints": oracle.checkpoints,
        "oracle_answers": "labels (argmax) only"}
    if cfg.sub_augmentation != "fixed":  # (absent by default: the substitutes' tags stay)
        sub_settings["augmentation"] = (
            f"{cfg.sub_augmentation}: CleverHans' jacobian_augmentation as the release ran it "
            "(issue #321): X = [x; x], X[2i] = X[i] + lambda * sign(J(x[i])) in order; old "
            "labels kept on the first half, the oracle labels the second")
    # The substitute's identity: its settings and the oracle's, weights by sha256 (not by
    # folder, so a moved checkout still finds it).
    tag = rec_cache.fingerprint(dict(
        sub_settings, oracle={k: v for k, v in oracle.settings.items() if k != "classifier"},
        oracle_checkpoints={k: v["sha256"] for k, v in oracle.checkpoints.items()}))
    state = substitute.SubstituteState(os.path.join(parent, ".substitutes", tag), tag)
    x_test = data.to_float(splits.x_test[:last]).numpy()
    y_test = splits.y_test[:last].astype(np.int64)
    x_rest = data.to_float(splits.x_test[first:]).numpy()  # every round's accuracy is on these
    print(f"[blackbox] substitute {cfg.sub_model} of model {cfg.model} ({cfg.defense}); its "
          f"points are labelled by {label_defense} ({cfg.blackbox_labels}) with "
          f"{oracle.settings}; state in {state.folder}", flush=True)
    # Each round's accuracy and query count reach TensorBoard as the round ends; the rounds
    # resumed from an earlier process are written once the substitute is done.
    writer = tf.summary.create_file_writer(os.path.join(results_dir, "logs"))
    written = set()

    def on_round(info):
        _write_substitute_scalars(writer, [info])
        written.add(info["round"])
    history = substitute.train_substitute(
        sub, x_test[:first], y_test[:first], oracle=oracle.predict,
        oracle_batch_size=oracle.batch_size,
        oracle_seed=lambda r, k: [cfg.seed, ORACLE_SEED_BASE + r * 4096 + k],
        state=state, rounds=cfg.sub_rounds, epochs=cfg.sub_epochs, lam=cfg.sub_lambda,
        batch_size=cfg.batch_size, lr=cfg.classifier_lr, seed=cfg.seed,
        eval_x=x_rest, eval_y=splits.y_test[first:].astype(np.int64),
        progress=lambda line: print(line, flush=True), on_round=on_round,
        augmentation=cfg.sub_augmentation)
    _write_substitute_scalars(writer, [h for h in history if h["round"] not in written])
    history = _with_interval(history, len(x_rest))
    final_round = cfg.sub_rounds - 1
    state.load_round(final_round, sub)  # the saved weights: identical in fresh and resumed runs
    checkpoints_used["substitute"] = {
        "folder": state.folder, "round": final_round,
        "sha256": {os.path.basename(p): checkpoints.sha256_file(p)
                   for p in state.weights_files(final_round)}}

    # --- FGSM on the substitute, evaluated on test[first:last] -----------------------------------
    sub_fn = lambda x: sub(x, training=False)  # noqa: E731
    attack = attacks.make_attack("fgsm", sub_fn, eps=cfg.fgsm_eps, seed=cfg.seed)
    x_eval, y_eval = x_test[first:last], y_test[first:last]
    save_adversarial(os.path.join(results_dir, ADVERSARIAL_FILE),
                     _adversarial_images(attack, x_eval, cfg.eval_batch_size), y_eval,
                     np.arange(first, last))
    run_settings = {
        "model": cfg.model, "attack": "fgsm", "defense": cfg.defense,
        "gradient": f"substitute {cfg.sub_model}", "num_tests": cfg.num_tests,
        "test_images": f"test[{first}:{last}]", "seed": cfg.seed,
        "batch_size": cfg.eval_batch_size, "precision": precision,
        "attack_settings": dict(attacks.describe("fgsm", eps=cfg.fgsm_eps),
                                crafted_on=f"the substitute ({cfg.sub_model})"),
        "rec_iters": cfg.rec_iters, "rec_rr": cfg.rec_rr, "rec_lr": cfg.rec_lr,
        "checkpoints": checkpoints_used,
        "substitute": dict(sub_settings, rounds=cfg.sub_rounds, fingerprint=tag),
        "oracle": {"labels": cfg.blackbox_labels, "labelling_defense": label_defense,
                   "quirk": {"defended": LABEL_QUIRK, "release_untrained": UNTRAINED_QUIRK}.get(
                       cfg.blackbox_labels),
                   **oracle.settings}}
    if cfg.defense == "defense_gan" and cfg.rec_prune_at:
        run_settings.update(rec_prune_at=cfg.rec_prune_at, rec_keep=cfg.rec_keep)
    run_settings.update(predictors.classifier_settings(cfg), **defense_settings)
    run_settings = _json_roundtrip(run_settings)
    records, timing = evaluation.evaluate(
        x_eval, y_eval, classifier=classifier, attack=attack, batch_size=cfg.eval_batch_size,
        seed=cfg.seed, records_dir=os.path.join(results_dir, "records"), settings=run_settings,
        defended=defended, cache=cache, progress=lambda line: print(line, flush=True),
        index_offset=first, mode="blackbox")
    metrics = results.summarize(records, cfg.defense)
    sub_correct = int(sum(p == y for p, y in zip(
        tf.argmax(sub_fn(x_eval), 1).numpy(), y_eval)))
    metrics["substitute_accuracy"] = sub_correct / len(y_eval)
    metrics["substitute_accuracy_ci95"] = list(stats.wilson_interval(sub_correct, len(y_eval)))
    if results.finished_unchanged(results_dir, timing, cfg.eval_batch_size, cfg.num_tests,
                                  run_settings):
        print(f"[blackbox] every batch was already done; kept {results_dir}/results.json "
              f"(adversarial_accuracy {_accuracy_text(metrics)})", flush=True)
        return
    result = results.run_result(run_settings, metrics, timing, dataclasses.asdict(cfg),
                                sys.argv)
    result.update(substitute_rounds=history, oracle_queries=history[-1]["oracle_queries"],
                  gradient_mode=f"none: FGSM on the substitute {cfg.sub_model}, transferred")
    results.write(results_dir, result,
                  evaluation.load_example_images(os.path.join(results_dir, "records")))
    print(f"[blackbox] substitute accuracy {metrics['substitute_accuracy']:.4f}, "
          f"{result['oracle_queries']} oracle queries; "
          f"clean {metrics['clean_accuracy']:.4f}, adversarial "
          f"{_accuracy_text(metrics)}", flush=True)
    print(f"[blackbox] wrote {results_dir}/results.json", flush=True)


def _accuracy_text(metrics) -> str:
    """The defense's adversarial accuracy as results.summarize counts it (MagNet: a rejected
    adversarial input is correct) with its interval and n."""
    n = metrics["num_images"]
    return stats.format_accuracy(int(round(metrics["adversarial_accuracy"] * n)), n)


def _finished_run(results_dir: str, cfg: Config, checkpoints_used: dict,
                  oracle_checkpoints: dict) -> dict | None:
    """results.json of results_dir when it was written with the same flags (but for
    --results_dir itself), the same evaluated checkpoints and the same oracle checkpoints
    (sha256; their folders may differ: a clone elsewhere), else None. Checked before the
    substitute is trained: on a new machine its state (git-ignored) is gone, and retraining
    it only to find every evaluation batch done would cost a substitute's oracle queries."""
    previous = results.load(results_dir)
    settings = previous.get("settings", {})

    def flags(values):  # where the results go does not change them
        return {k: v for k, v in values.items() if k != "results_dir"}

    if not previous.get("metrics") or flags(previous.get("flags", {})) != flags(
            _json_roundtrip(dataclasses.asdict(cfg))):
        return None

    def shas(entries):
        return {k: v.get("sha256") for k, v in _json_roundtrip(entries).items()
                if k != "substitute"}

    same = (shas(settings.get("checkpoints", {})) == shas(checkpoints_used)
            and rec_cache.portable(settings.get("substitute", {}).get("oracle_checkpoints"))
            == rec_cache.portable(oracle_checkpoints))
    return previous if same else None


def _json_roundtrip(obj):
    import json
    return json.loads(json.dumps(obj, default=str))


def _write_substitute_scalars(writer, history):
    for info in history:
        summaries.scalars(writer, info["round"], {
            "substitute/accuracy": info["substitute_accuracy"],
            "substitute/oracle_queries": info["oracle_queries"],
            "substitute/train_size": info["train_size"]})
    writer.flush()
