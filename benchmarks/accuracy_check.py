"""Is a fast projection setting as accurate as the faithful float32 one?

    python benchmarks/accuracy_check.py                        # shipped GAN + classifier F,
                                                               # 1000 test images, L=200, R=10
    python benchmarks/accuracy_check.py --precision=bfloat16 --rec_prune_at=0.25 --rec_keep=2

Projects the first --num_tests test images twice with the same seeds: once faithfully
(float32, no early stop) and once with the fast setting (--precision, --rec_prune_at,
--rec_keep), classifies both reconstructions with the classifier and reports, as JSON, both
accuracies of classifier(P(x)), their difference (the issue's bound: 0.3 points), how often
the two predictions agree, the mean projection MSEs and each setting's images/s. Where the
CPU has no bfloat16 arithmetic the fast setting falls back to float32 (with a message).

Reconstructions go through the clean-image cache that `main.py --mode=whitebox` uses
(results/mnist/whitebox/.projection_cache, same batches and seeds): the faithful half is free
after a Defense-GAN whitebox run on as many images, and a killed check resumes per batch.
Images/s are measured on the batches projected in this run (null when all were cached); a
rerun that projects nothing and finds an earlier report with the same settings and results
leaves that report untouched, so its measured images/s survive.
"""

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as main.py
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BOUND_POINTS = 0.3  # accuracy points (percent) the fast setting may lose


def kept_earlier_report(path, report):
    """True when this run projected nothing (both halves cached) and the report at `path`
    already holds the same images, settings and results: rewriting it would only replace
    its measured images/s with null."""
    if report["faithful"]["images_per_second"] or report["fast"]["images_per_second"]:
        return False
    try:
        with open(path) as f:
            earlier = json.load(f)
    except (OSError, ValueError):
        return False
    same = ("num_tests", "seed", "gan_dir", "classifier_dir", "model",
            "clean_accuracy_without_defense", "prediction_agreement")
    half = ("precision", "settings", "accuracy", "mean_mse")
    return (all(earlier.get(k) == report[k] for k in same)
            and all(isinstance(earlier.get(name), dict)
                    and all(earlier[name].get(k) == report[name][k] for k in half)
                    for name in ("faithful", "fast")))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gan_dir", default=os.path.join(REPO, "checkpoints", "mnist", "gan"))
    parser.add_argument("--classifier_dir",
                        default=os.path.join(REPO, "checkpoints", "mnist", "classifier_F"))
    parser.add_argument("--model", default="F", help="the classifier's architecture (A-F)")
    parser.add_argument("--num_tests", type=int, default=1000)
    parser.add_argument("--rec_iters", type=int, default=200)
    parser.add_argument("--rec_rr", type=int, default=10)
    parser.add_argument("--rec_lr", type=float, default=10.0)
    parser.add_argument("--batch_size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="bfloat16", choices=("float32", "bfloat16"),
                        help="precision of the fast setting")
    parser.add_argument("--rec_prune_at", type=float, default=0.0,
                        help="early stop of the fast setting (0: off)")
    parser.add_argument("--rec_keep", type=int, default=2)
    parser.add_argument("--out", default=None, help="report JSON (default: benchmarks/"
                        "results/accuracy_check_<precision>[_prune<at>_keep<k>].json)")
    parser.add_argument("--cache_dir", default=os.path.join(REPO, "results", "mnist",
                                                            "whitebox"),
                        help="folder whose .projection_cache holds reconstructions ('' : none)")
    args = parser.parse_args()
    if args.out is None:
        tag = args.precision + (f"_prune{args.rec_prune_at:g}_keep{args.rec_keep}"
                                if args.rec_prune_at else "")
        args.out = os.path.join(REPO, "benchmarks", "results", f"accuracy_check_{tag}.json")

    import numpy as np

    from defense_gan import checkpoints, classifiers, data, gan, hardware, projection, rec_cache
    from defense_gan.errors import DefenseGanError
    from defense_gan.files import writable_dir_problem, write_json_atomic

    for flag, folder in (("--cache_dir", args.cache_dir), ("--out", os.path.dirname(
            os.path.abspath(args.out)))):
        problem = folder and writable_dir_problem(folder)
        if problem:
            print(f"error: {flag}: '{folder}' {problem}", file=sys.stderr, flush=True)
            sys.exit(2)
    try:
        splits = data.load("mnist")
        x = data.to_float(splits.x_test[:args.num_tests]).numpy()
        y = np.asarray(splits.y_test[:args.num_tests])
        classifier, c_manifest = classifiers.load_classifier(args.classifier_dir, "mnist",
                                                             args.model)
        fast_precision = hardware.resolve_precision(args.precision)
        fast = projection.ProjectionSettings(args.rec_iters, args.rec_rr, args.rec_lr,
                                             batch_size=args.batch_size,
                                             rec_prune_at=args.rec_prune_at,
                                             rec_keep=args.rec_keep)
        faithful = projection.ProjectionSettings(args.rec_iters, args.rec_rr, args.rec_lr,
                                                 batch_size=args.batch_size)
        runs = {}
        for name, precision, settings in (("faithful", "float32", faithful),
                                          ("fast", fast_precision, fast)):
            generator, g_manifest = gan.load_generator(args.gan_dir, "mnist", precision)
            projector = projection.Projector(generator, splits.image_shape,
                                             int(g_manifest.get("latent_dim", 128)), settings)
            cache = (rec_cache.clean_cache(args.cache_dir, g_manifest, settings, args.seed,
                                            precision) if args.cache_dir else None)
            start = time.time()
            x_rec, mse, rate = rec_cache.reconstruct(
                x, projector, args.seed, cache, progress=lambda done, n, name=name: print(
                    f"[accuracy_check] {name}: {done}/{n}", flush=True))
            logits = np.concatenate([classifier(x_rec[i:i + 500], training=False).numpy()
                                     for i in range(0, len(x_rec), 500)])
            pred = logits.argmax(axis=1)
            runs[name] = {"precision": precision, "settings": settings.cache_key(),
                          "accuracy": float(np.mean(pred == y)),
                          "mean_mse": float(np.mean(mse)), "images_per_second": rate,
                          "seconds": time.time() - start, "predictions": pred}
    except (DefenseGanError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    plain = classifier(x, training=False).numpy().argmax(axis=1)
    a, b = runs["faithful"], runs["fast"]
    diff_points = 100.0 * (b["accuracy"] - a["accuracy"])
    report = {
        "num_tests": args.num_tests, "seed": args.seed,
        "gan_dir": args.gan_dir, "generator_iterations": g_manifest.get("iterations"),
        "classifier_dir": c_manifest["folder"], "model": args.model,
        "requested_precision": args.precision,
        "clean_accuracy_without_defense": float(np.mean(plain == y)),
        "faithful": {k: v for k, v in a.items() if k != "predictions"},
        "fast": {k: v for k, v in b.items() if k != "predictions"},
        "accuracy_difference_points": diff_points,
        "prediction_agreement": float(np.mean(a["predictions"] == b["predictions"])),
        "speedup": (b["images_per_second"] / a["images_per_second"]
                    if a["images_per_second"] and b["images_per_second"] else None),
        "within_bound": abs(diff_points) <= BOUND_POINTS, "bound_points": BOUND_POINTS,
        "environment": checkpoints.environment(),
        "command": "python " + " ".join(sys.argv),
    }
    if kept_earlier_report(args.out, report):
        print(f"[accuracy_check] every batch came from the cache and {args.out} already "
              "reports these settings and accuracies: kept it (its measured images/s stay)",
              flush=True)
        return
    write_json_atomic(args.out, report)
    rate = lambda r: (f"{r:.2f} img/s" if r else "cached")  # noqa: E731
    speedup = f"{report['speedup']:.2f}x" if report["speedup"] else "n/a (cached)"
    print(f"[accuracy_check] faithful fp32 {a['accuracy']:.4f} ({rate(a['images_per_second'])}"
          f"), fast {b['precision']}"
          + (f" prune {args.rec_prune_at:g}/keep {args.rec_keep}" if args.rec_prune_at else "")
          + f" {b['accuracy']:.4f} ({rate(b['images_per_second'])}): difference "
          f"{diff_points:+.2f} points (bound +-{BOUND_POINTS}), agreement "
          f"{report['prediction_agreement']:.4f}, speed-up {speedup} -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
