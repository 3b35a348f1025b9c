"""Benchmark of one WGAN-GP iteration (5 critic steps + 1 generator step, batch 50).

    python benchmarks/train_gan.py           # 20 iterations x 3 repetitions per variant
    python benchmarks/train_gan.py --quick   # 3 iterations x 1 repetition (about a minute)

Compares, in iterations/s and in one invocation:
  project: defense_gan.gan.build_wgan + tf.function(model.train_step), as --mode=train_gan runs;
  eager:   a plain Keras reference written here, in the style of the keras-io WGAN-GP example
           but without tf.function: eager GradientTape steps on the same networks, same losses,
           same Adam settings;
in float32 and (where the CPU has AVX512-BF16/AMX) bfloat16 (Keras mixed_bfloat16), with the
project's TF_ENABLE_ONEDNN_OPTS=1 and with plain TensorFlow defaults (the variable unset), each
setting in its own process. Variants of one process are timed round-robin so their ratios see
the same machine load; the best repetition counts. Real MNIST batches are used.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SCRIPT = os.path.abspath(__file__)
BATCH, CRITIC_ITERS, LATENT_DIM, GP_WEIGHT, LR = 50, 5, 128, 10.0, 1e-4


def eager_reference(precision: str, seed: int = 0):
    """A plain Keras WGAN-GP iteration as a Python function run eagerly."""
    import keras
    import tensorflow as tf

    from defense_gan import networks
    keras.utils.set_random_seed(seed)
    generator = networks.build(networks.Generator(LATENT_DIM, precision=precision),
                               (LATENT_DIM,))
    critic = networks.build(networks.Critic(precision=precision), networks.MNIST_SHAPE)
    g_opt = keras.optimizers.Adam(LR, beta_1=0.5, beta_2=0.9)
    d_opt = keras.optimizers.Adam(LR, beta_1=0.5, beta_2=0.9)

    def iteration(real):
        for i in range(CRITIC_ITERS):
            x = real[i]
            z = tf.random.normal([BATCH, LATENT_DIM])
            alpha = tf.random.uniform([BATCH, 1, 1, 1])
            with tf.GradientTape() as tape:
                fake = generator(z, training=True)
                d_real = critic(x, training=True)
                d_fake = critic(fake, training=True)
                x_hat = x + alpha * (fake - x)
                with tf.GradientTape() as gp_tape:
                    gp_tape.watch(x_hat)
                    scores = critic(x_hat, training=True)
                grads = gp_tape.gradient(scores, x_hat)
                norms = tf.sqrt(tf.reduce_sum(tf.square(grads), axis=[1, 2, 3]) + 1e-12)
                gp = tf.reduce_mean(tf.square(norms - 1.0))
                d_loss = tf.reduce_mean(d_fake) - tf.reduce_mean(d_real) + GP_WEIGHT * gp
            d_grads = tape.gradient(d_loss, critic.trainable_variables)
            d_opt.apply_gradients(zip(d_grads, critic.trainable_variables))
        z = tf.random.normal([BATCH, LATENT_DIM])
        with tf.GradientTape() as tape:
            g_loss = -tf.reduce_mean(critic(generator(z, training=True), training=True))
        g_grads = tape.gradient(g_loss, generator.trainable_variables)
        g_opt.apply_gradients(zip(g_grads, generator.trainable_variables))
        return g_loss

    return iteration


def project_step(precision: str, seed: int = 0):
    import tensorflow as tf

    from defense_gan import gan
    model = gan.build_wgan(LATENT_DIM, CRITIC_ITERS, GP_WEIGHT, LR, seed, precision)
    step = tf.function(model.train_step)
    return lambda real: step(real)["generator_loss"]


def real_batches(n: int):
    import numpy as np

    from defense_gan import data
    try:
        x = data.to_float(data.load("mnist").x_train[:n * CRITIC_ITERS * BATCH]).numpy()
    except Exception:  # noqa: BLE001 - no data: time on noise
        x = np.random.default_rng(0).uniform(size=(n * CRITIC_ITERS * BATCH, 28, 28, 1))
    return np.asarray(x, np.float32).reshape(n, CRITIC_ITERS, BATCH, 28, 28, 1)


def worker(spec: dict) -> dict:
    common.set_threads(spec)
    import tensorflow as tf

    from defense_gan import hardware
    out = {"name": spec["name"], "spec": spec, "threads": hardware.thread_settings(),
           "tensorflow": tf.__version__, "variants": {}}
    batches = [tf.constant(b) for b in real_batches(spec["iterations"])]
    runs = []
    for v in spec["variants"]:
        make = project_step if v["impl"] == "project" else eager_reference
        fn = make(v["precision"])
        start = time.perf_counter()
        for b in batches[:2]:  # warm-up: trace (project) and oneDNN primitives
            fn(b).numpy()
        runs.append((v, fn, {"warmup_seconds": time.perf_counter() - start, "seconds": []}))
    for _ in range(spec["reps"]):
        for v, fn, res in runs:
            start = time.perf_counter()
            for b in batches:
                loss = fn(b)
            loss.numpy()
            res["seconds"].append(time.perf_counter() - start)
    for v, _, res in runs:
        res["iterations_per_second"] = spec["iterations"] / min(res["seconds"])
        out["variants"][v["name"]] = dict(res, spec=v)
    for p in ("float32", "bfloat16"):
        names = {f"{impl}_{p}": None for impl in ("project", "eager")}
        if all(n in out["variants"] for n in names):
            out["variants"][f"project_{p}"]["project_vs_eager"] = (
                out["variants"][f"project_{p}"]["iterations_per_second"] /
                out["variants"][f"eager_{p}"]["iterations_per_second"])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 iterations, 1 repetition")
    parser.add_argument("--iterations", type=int, default=None, help="per timed repetition")
    parser.add_argument("--reps", type=int, default=None)
    args = common.parse_or_work(parser, worker, "train_gan")
    if args is None:
        return
    iterations = args.iterations or (3 if args.quick else 20)
    reps = args.reps or (1 if args.quick else 3)
    info = common.machine()
    precisions = ["float32"] + (["bfloat16"] if info["bf16_cpu_flags"] else [])
    variants = lambda precs: [{"name": f"{impl}_{p}", "impl": impl, "precision": p}  # noqa
                              for p in precs for impl in ("project", "eager")]
    common_spec = {"iterations": iterations, "reps": reps, "intra_op": 0, "inter_op": 0}
    workers = [dict(common_spec, name="tf_defaults", onednn=None,
                    variants=variants(["float32"])),
               dict(common_spec, name="project", onednn="1", variants=variants(precisions))]

    def header(spec):
        return (f" (TF_ENABLE_ONEDNN_OPTS={spec['onednn'] or 'unset'}): "
                f"{', '.join(v['name'] for v in spec['variants'])}")

    def report(spec, res):
        for name, r in res["variants"].items():
            extra = (f" = {r['project_vs_eager']:.2f}x eager" if "project_vs_eager" in r
                     else "")
            print(f"[bench]   {name}: {r['iterations_per_second']:.3f} it/s{extra}", flush=True)

    start = time.time()
    results = common.run_workers(SCRIPT, workers, header, report)
    get = {f"{r['name']}/{k}": v for r in results for k, v in r.get("variants", {}).items()}
    ratios = {}
    for p in precisions:
        if f"project/project_{p}" in get and "project_vs_eager" in get[f"project/project_{p}"]:
            ratios[f"project_vs_eager_{p}"] = get[f"project/project_{p}"]["project_vs_eager"]
    base = get.get("tf_defaults/eager_float32")
    project = {k: v for k, v in get.items() if k.startswith("project/project_")}
    fastest = max(project, key=lambda k: project[k]["iterations_per_second"], default=None)
    if base and fastest:
        ratios["fastest_vs_plain_keras_fp32_tf_defaults"] = (
            project[fastest]["iterations_per_second"] / base["iterations_per_second"])
    if base and "project/project_float32" in get:
        ratios["project_fp32_vs_plain_keras_fp32_tf_defaults"] = (
            get["project/project_float32"]["iterations_per_second"] /
            base["iterations_per_second"])
    doc = {"benchmark": "train_gan", "command": "python " + " ".join(sys.argv),
           "quick": args.quick, "iterations_per_repetition": iterations, "repetitions": reps,
           "batch": BATCH, "critic_iters": CRITIC_ITERS, "seconds": round(time.time() - start, 1),
           **info, **common.versions(), "fastest": fastest,
           "ratios": {k: round(v, 3) for k, v in ratios.items()},
           "iterations_per_second": {k: round(v["iterations_per_second"], 4)
                                     for k, v in get.items()},
           "results": results,
           "note": ("ratios are measured in one invocation; absolute speeds depend on other "
                    "load on the machine")}
    out_path = args.out or os.path.join(common.RESULTS_DIR,
                                        "train_gan_quick.json" if args.quick else
                                        "train_gan.json")
    common.write(out_path, doc)
    fmt = lambda k: "n/a" if k not in ratios else f"{ratios[k]:.2f}x"  # noqa: E731
    print(f"[bench] {info['cpu']}: WGAN-GP iteration, project vs eager Keras: fp32 "
          f"{fmt('project_vs_eager_float32')}, bf16 {fmt('project_vs_eager_bfloat16')}; fastest "
          f"({fastest}) {fmt('fastest_vs_plain_keras_fp32_tf_defaults')} plain Keras fp32 with "
          f"TF defaults -> {out_path}", flush=True)


if __name__ == "__main__":
    main()
