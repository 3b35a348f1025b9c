"""Benchmark of the Defense-GAN projection (issue 5), all ratios measured in one invocation.

    python benchmarks/projection.py            # full: L=200, R=10, 50 images (~20 min)
    python benchmarks/projection.py --quick    # L=10, no sweep (about a minute when idle)

For every setting a worker process (fresh TensorFlow, its own TF_ENABLE_ONEDNN_OPTS and thread
pools) measures, on the same 50 MNIST test images and the same restarts:
  (a) the project's projection, defense_gan.projection.Projector, in images/s;
  (b) an eager reference written here: a Python loop of GradientTape steps with the same maths
      (tile R, z ~ N(0, 1/latent_dim), momentum 0.7, lr 10, per-restart pixel MSE, summed,
      best restart), on the same weights called as plain Keras layers (the last one Keras'
      own Conv2DTranspose, not the project's sub-pixel form); its time per step is measured
      on --eager_iters steps (the step cost does not depend on L), in alternation with the
      projection on as many steps, and reported for L steps;
  (c) the matmul throughput (GFLOP/s) in float32 and bfloat16, in the same process.
The projection's achieved GFLOP/s counts the generator's forward and input-gradient backward
per step analytically (no weight gradients: only dLoss/dz is needed).

Workers (one process each, fresh TensorFlow): `tf_defaults` (TF_ENABLE_ONEDNN_OPTS unset,
default threads: plain TF) times fp32; `project` (TF_ENABLE_ONEDNN_OPTS=1 as main.py sets it)
times fp32 and, where the CPU has AVX512-BF16/AMX, bf16 at batch 50 and L steps (both with the
eager reference), the same with Keras' transposed convolution as the last layer (`*_keras_last`:
what the sub-pixel rewrite gains), the early stop (--rec_prune_at/--rec_keep) on the fastest
precision, and a sweep of batch sizes (50/100/200 images per call, --sweep_iters steps);
`threads_IxJ` workers time intra_op=I/inter_op=J thread pools. Variants of one worker are timed
round-robin, so their ratios see the same load. Rates are images/s at L steps (step time x L for
the sweep). The fastest setting without early stop is reported as the fastest accurate one (bf16
still needs accuracy_check.py on trained checkpoints).

The generator is the shipped one (checkpoints/mnist/gan) where it exists, else random weights:
speed does not depend on the weights (the JSON says which was used). The machine may be busy
with other work: compare ratios, each measured in one run; `matmul_*` of each worker shows the
load it saw.
"""

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SCRIPT = os.path.abspath(__file__)
LATENT_DIM, DIM, IMAGE = 128, 64, (28, 28, 1)


def generator_forward_flops(latent_dim: int = LATENT_DIM, dim: int = DIM) -> int:
    """Multiply-add FLOPs (2 per MAC) of one generator forward pass for one latent vector.

    Dense latent->4*4*4dim; ConvT 5x5/2 4x4x4dim->8x8x2dim; ConvT 7x7x2dim->14x14xdim;
    ConvT 14x14xdim->28x28x1 (a transposed conv costs in_pixels*Cin*Cout*k*k MACs)."""
    fc = latent_dim * 4 * 4 * 4 * dim
    d1 = 4 * 4 * (4 * dim) * (2 * dim) * 25
    d2 = 7 * 7 * (2 * dim) * dim * 25
    d3 = 14 * 14 * dim * 1 * 25
    return 2 * (fc + d1 + d2 + d3)


def step_flops(rows: int) -> int:
    """FLOPs of one projection step on `rows` latent vectors: the forward plus the backward to
    the input only (each layer's input gradient costs as much as its forward; the weight
    gradients are not needed, so they are not counted)."""
    return 2 * generator_forward_flops() * rows


# --- worker -----------------------------------------------------------------------------------

def load_generator(precision: str, gan_dir: str):
    import keras

    from defense_gan import gan, networks
    if gan_dir != "random" and os.path.isfile(os.path.join(gan_dir, "manifest.json")):
        generator, manifest = gan.load_generator(gan_dir, "mnist", precision)
        return generator, f"shipped generator {gan_dir} (iterations {manifest.get('iterations')})"
    keras.utils.set_random_seed(0)
    generator = networks.build(networks.Generator(LATENT_DIM, precision=precision), (LATENT_DIM,))
    return generator, "random weights (seed 0): timing does not depend on the weights"


def test_images(n: int):
    import numpy as np

    from defense_gan import data
    try:
        splits = data.load("mnist")
        images = data.to_float(splits.x_test[:n]).numpy()
        return np.asarray(images, np.float32), "MNIST test images 0..%d" % (n - 1)
    except Exception as err:  # noqa: BLE001 - any data problem: time on noise instead
        rng = np.random.default_rng(0)
        return rng.uniform(size=(n, *IMAGE)).astype(np.float32), f"uniform noise ({err})"


def plain_keras_generator(generator):
    """The generator's layers called one by one, the last with Keras' own Conv2DTranspose: the
    network as plain Keras runs it, without the project's sub-pixel rewrite of the last layer
    (defense_gan.networks.subpixel_conv_transpose). Same weights, same function."""
    import tensorflow as tf
    g = generator

    def call(z, training=False):
        h = g.deconv2(g.crop(g.deconv1(g.reshape(g.fc(z)))))
        return tf.sigmoid(tf.cast(g.deconv3(h), tf.float32))
    return call


def eager_projection(generator, x, seed, iters, restarts, lr=10.0, momentum=0.7):
    """The reference: the same maths as Projector, as a plain eager GradientTape loop through
    the plain Keras layers (`plain_keras_generator`)."""
    import tensorflow as tf
    generator = plain_keras_generator(generator)
    batch = x.shape[0]
    targets = tf.repeat(x, restarts, axis=0)
    z = tf.random.stateless_normal([batch * restarts, LATENT_DIM], seed=seed,
                                   stddev=1.0 / LATENT_DIM ** 0.5)
    velocity = tf.zeros_like(z)
    for _ in range(iters):
        with tf.GradientTape() as tape:
            tape.watch(z)
            rec = generator(z, training=False)
            loss = tf.reduce_sum(tf.reduce_mean(tf.square(rec - targets), axis=[1, 2, 3]))
        velocity = momentum * velocity + tape.gradient(loss, z)
        z = z - lr * velocity
    mse = tf.reshape(tf.reduce_mean(tf.square(generator(z, training=False) - targets),
                                    axis=[1, 2, 3]), [batch, restarts])
    best = tf.argmin(mse, axis=1, output_type=tf.int32)
    flat = tf.range(batch) * restarts + best
    z_star = tf.gather(z, flat)
    return generator(z_star, training=False), z_star, tf.gather(tf.reshape(mse, [-1]), flat)


def worker(spec: dict) -> dict:
    """One process = one TF_ENABLE_ONEDNN_OPTS and thread setting. Its variants (precision,
    batch, pruning) are timed round-robin in the same process, so their ratios see the same
    load; the best of `reps` timed calls counts."""
    common.set_threads(spec)
    import numpy as np
    import tensorflow as tf

    from defense_gan import hardware, projection
    out = {"name": spec["name"], "spec": spec, "threads": hardware.thread_settings(),
           "tensorflow": tf.__version__, "variants": {}}
    peaks = {"float32": [], "bfloat16": []}

    def measure_peaks():
        for dtype in peaks:
            peaks[dtype].append(common.matmul_gflops(dtype, spec["matmul_n"],
                                                     spec["matmul_reps"]))

    generators = {}
    for precision in sorted({v["precision"] for v in spec["variants"]}):
        generators[precision], out["generator"] = load_generator(precision, spec["gan_dir"])
    if len(generators) == 2:  # random weights: give both precisions the same ones
        generators["bfloat16"].set_weights(generators["float32"].get_weights())
    images, out["inputs"] = test_images(max(v["batch"] for v in spec["variants"]))
    seed = tf.constant([0, 0], tf.int32)
    runs = []
    for v in spec["variants"]:
        generator, batch, restarts = generators[v["precision"]], v["batch"], 10
        if v.get("keras_last"):
            generator = plain_keras_generator(generator)
        x = tf.constant(images[:batch])
        settings = projection.ProjectionSettings(v["iters"], restarts, 10.0, batch_size=batch,
                                                 rec_prune_at=v.get("prune_at", 0.0),
                                                 rec_keep=v.get("keep", 2))
        projector = projection.Projector(generator, IMAGE, LATENT_DIM, settings)
        start = time.perf_counter()
        if v["iters"] <= 50:   # warm up with a real call (trace, graph optimisation, oneDNN)
            projector(x, seed)[2].numpy()
        else:                  # only trace: a real call would cost as much as a timed one
            projector._project.get_concrete_function()
        res = {"warmup_seconds": time.perf_counter() - start, "project_call_seconds": [],
               "eager_call_seconds": []}
        runs.append((v, generator, x, projector, res))
        if v.get("eager"):
            eager_projection(generator, x, seed, 1, restarts)  # warm-up of the eager path
            # The same projection on eager_iters steps, timed in alternation with the eager
            # reference, so that their ratio sees the same load.
            res["short"] = projector if spec["eager_iters"] == v["iters"] else (
                projection.Projector(generator, IMAGE, LATENT_DIM, dataclasses.replace(
                    settings, rec_iters=spec["eager_iters"])))
            res["short"](x, seed)[2].numpy()
            res["short_call_seconds"] = []
    measure_peaks()
    for _ in range(spec["reps"]):
        for v, generator, x, projector, res in runs:
            outs = []
            res["project_call_seconds"] += common.timed(
                lambda: outs.append([t.numpy() for t in projector(x, seed)]), 1)
            res["mean_mse"] = float(np.mean(outs[-1][2]))
    for _ in range(spec["pair_reps"]):
        for v, generator, x, projector, res in runs:
            if not v.get("eager"):
                continue
            short, e_out = [], []
            res["short_call_seconds"] += common.timed(
                lambda: short.append(res["short"](x, seed)[2].numpy()), 1)
            res["eager_call_seconds"] += common.timed(
                lambda: e_out.append(eager_projection(generator, x, seed, spec["eager_iters"],
                                                      10)[2].numpy()), 1)
            res["max_abs_mse_difference_vs_eager"] = float(np.max(np.abs(e_out[-1] - short[-1])))
    measure_peaks()
    out["matmul_gflops"] = {k: max(p) for k, p in peaks.items()}
    for v, _, _, projector, res in runs:
        batch, step = v["batch"], min(res["project_call_seconds"]) / v["iters"]
        s = projector.settings
        # Restarts descended per step on average (fewer after an early stop).
        rows = batch * (s.rec_rr * s.prune_step() + s.rec_keep * (s.rec_iters - s.prune_step())
                        ) / s.rec_iters
        res.update(spec=v, traces=projector.traces, project_step_seconds=step,
                   project_images_per_second_at_L=batch / (step * v["L"]),
                   project_gflops=step_flops(rows) / step / 1e9, restarts_per_step=rows / batch)
        res["project_fraction_of_matmul_peak"] = (res["project_gflops"] /
                                                  out["matmul_gflops"][v["precision"]])
        if v.get("eager"):
            e_step = min(res["eager_call_seconds"]) / spec["eager_iters"]
            short_step = min(res.pop("short_call_seconds")) / spec["eager_iters"]
            del res["short"]
            res.update(eager_step_seconds=e_step, project_short_step_seconds=short_step,
                       eager_images_per_second_at_L=batch / (e_step * v["L"]),
                       eager_gflops=step_flops(batch * 10) / e_step / 1e9,
                       project_vs_eager=e_step / short_step)
        out["variants"][v["name"]] = res
    return out


# --- parent -----------------------------------------------------------------------------------

def variant(name, precision="float32", batch=50, iters=200, L=200, eager=False, prune_at=0.0,
            keep=2, keras_last=False) -> dict:
    return {"name": name, "precision": precision, "batch": batch, "iters": iters, "L": L,
            "eager": eager, "prune_at": prune_at, "keep": keep, "keras_last": keras_last}


def describe(spec, v) -> str:
    threads = ("default threads" if not (spec["intra_op"] or spec["inter_op"]) else
               f"intra_op={spec['intra_op'] or 'default'} inter_op={spec['inter_op'] or 'default'}")
    onednn = ("TF_ENABLE_ONEDNN_OPTS unset" if spec["onednn"] is None else
              f"TF_ENABLE_ONEDNN_OPTS={spec['onednn']}")
    prune = f", prune at {v['prune_at']:g} keep {v['keep']}" if v.get("prune_at") else ""
    last = ", Keras Conv2DTranspose last layer" if v.get("keras_last") else ""
    return f"{v['precision']}, batch {v['batch']}, {threads}, {onednn}{prune}{last}"


def run_all(args) -> dict:
    info = common.machine()
    bf16 = bool(info["bf16_cpu_flags"])
    precisions = ["float32"] + (["bfloat16"] if bf16 else [])
    L, S = args.rec_iters, args.sweep_iters
    base = {"reps": args.reps, "pair_reps": args.pair_reps, "eager_iters": args.eager_iters,
            "gan_dir": args.gan_dir,
            "matmul_n": args.matmul_n, "matmul_reps": args.matmul_reps}
    workers = [dict(base, name="tf_defaults", onednn=None, intra_op=0, inter_op=0,
                    variants=[variant("fp32_b50", iters=L, L=L, eager=True)])]
    tag = {"float32": "fp32", "bfloat16": "bf16"}
    fast = precisions[-1]
    project = [variant(f"{tag[p]}_b50", p, 50, L, L, eager=True) for p in precisions]
    # The same projection with the last layer as Keras' transposed convolution: what the
    # sub-pixel rewrite gains.
    project += [variant(f"{tag[p]}_b50_keras_last", p, 50, L, L, keras_last=True)
                for p in precisions]
    if not args.quick:
        project.append(variant(f"{tag[fast]}_b50_prune{args.prune_at:g}k{args.keep}", fast, 50,
                               L, L, prune_at=args.prune_at, keep=args.keep))
        for p in precisions:
            for batch in args.sweep_batches:
                project.append(variant(f"{tag[p]}_b{batch}_sweep", p, batch, S, L))
    workers.append(dict(base, name="project", onednn="1", intra_op=0, inter_op=0,
                        variants=project))
    if not args.quick:
        ncpu = os.cpu_count() or 1
        for intra, inter in sorted({(ncpu, 1), (max(ncpu // 2, 1), 1)}):
            workers.append(dict(base, name=f"threads_{intra}x{inter}", onednn="1",
                                intra_op=intra, inter_op=inter,
                                variants=[variant(f"{tag[p]}_b50_sweep", p, 50, S, L)
                                          for p in precisions]))
    def header(spec):
        return ": " + "; ".join(f"{v['name']} ({describe(spec, v)}, {v['iters']} steps)"
                                for v in spec["variants"])

    def report(spec, res):
        print(f"[bench]   matmul fp32 {res['matmul_gflops']['float32']:.0f}, bf16 "
              f"{res['matmul_gflops']['bfloat16']:.0f} GFLOP/s", flush=True)
        for name, r in res["variants"].items():
            r["description"] = describe(spec, r["spec"])
            line = (f"[bench]   {name}: {r['project_images_per_second_at_L']:.2f} img/s at L={L} "
                    f"({r['project_step_seconds']:.3f} s/step, {r['project_gflops']:.0f} GFLOP/s"
                    f" = {r['project_fraction_of_matmul_peak']:.0%} of {r['spec']['precision']} "
                    "matmul)")
            if "project_vs_eager" in r:
                line += (f"; eager {r['eager_images_per_second_at_L']:.2f} img/s -> "
                         f"{r['project_vs_eager']:.2f}x")
            print(line, flush=True)

    results = common.run_workers(SCRIPT, workers, header, report)
    return {"machine": info, "results": results}


def summarize(args, run: dict) -> dict:
    get = {}
    for res in run["results"]:
        for name, r in res.get("variants", {}).items():
            get[f"{res['name']}/{name}"] = r
    ratios = {}
    df, pf, pb = (get.get("tf_defaults/fp32_b50"), get.get("project/fp32_b50"),
                  get.get("project/bf16_b50"))
    if pf:
        ratios["project_fp32_vs_eager_fp32"] = pf["project_vs_eager"]
        ratios["project_fp32_fraction_of_fp32_matmul"] = pf["project_fraction_of_matmul_peak"]
    if pb:
        ratios["project_bf16_vs_eager_bf16"] = pb["project_vs_eager"]
        ratios["project_bf16_fraction_of_bf16_matmul"] = pb["project_fraction_of_matmul_peak"]
        if pf:
            ratios["project_bf16_vs_project_fp32"] = (pb["project_images_per_second_at_L"] /
                                                      pf["project_images_per_second_at_L"])
    for t in ("fp32", "bf16"):
        ours, keras_last = get.get(f"project/{t}_b50"), get.get(f"project/{t}_b50_keras_last")
        if ours and keras_last:
            ratios[f"subpixel_last_layer_speedup_{t}"] = (
                ours["project_images_per_second_at_L"] /
                keras_last["project_images_per_second_at_L"])
    accurate = {k: r for k, r in get.items() if not r["spec"].get("prune_at")
                and not r["spec"].get("keras_last") and not k.startswith("tf_defaults/")}
    fastest_key = max(accurate, key=lambda k: accurate[k]["project_images_per_second_at_L"],
                      default=None)
    fastest = accurate.get(fastest_key)
    if fastest and df:
        ratios["fastest_vs_plain_tf_fp32_defaults_eager"] = (
            fastest["project_images_per_second_at_L"] / df["eager_images_per_second_at_L"])
        ratios["fastest_vs_project_fp32_under_tf_defaults"] = (
            fastest["project_images_per_second_at_L"] / df["project_images_per_second_at_L"])
    if pf and df:
        ratios["project_fp32_vs_plain_tf_fp32_defaults_eager"] = (
            pf["project_images_per_second_at_L"] / df["eager_images_per_second_at_L"])
    pruned = [r for r in get.values() if r["spec"].get("prune_at")]
    if pruned and pb:
        ratios["pruned_bf16_vs_bf16"] = (pruned[0]["project_images_per_second_at_L"] /
                                         pb["project_images_per_second_at_L"])
    if pruned and df:  # early stop: accurate only once accuracy_check.py says so
        ratios["pruned_vs_plain_tf_fp32_defaults_eager"] = (
            pruned[0]["project_images_per_second_at_L"] / df["eager_images_per_second_at_L"])
    table = {k: round(r["project_images_per_second_at_L"], 3) for k, r in get.items()}
    return {"ratios": {k: round(v, 3) for k, v in ratios.items()},
            "images_per_second_at_L": table,
            "fastest": fastest_key,
            "fastest_setting": fastest and fastest.get("description")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="L=10, eager on 10 steps, one repetition, no sweep (~1 minute)")
    parser.add_argument("--rec_iters", type=int, default=None, help="L (default 200; quick 10)")
    parser.add_argument("--eager_iters", type=int, default=None,
                        help="steps the eager reference is timed on (default 20; quick = L)")
    parser.add_argument("--sweep_iters", type=int, default=10,
                        help="steps per call in the batch/thread sweep")
    parser.add_argument("--sweep_batches", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--reps", type=int, default=None,
                        help="timed calls at L steps (best counts; default 1)")
    parser.add_argument("--pair_reps", type=int, default=None,
                        help="alternations of eager and projection on --eager_iters steps "
                             "(best counts; default 3, quick 1)")
    parser.add_argument("--matmul_n", type=int, default=None)
    parser.add_argument("--matmul_reps", type=int, default=5)
    parser.add_argument("--prune_at", type=float, default=0.25,
                        help="early stop of the pruned variant (--rec_prune_at)")
    parser.add_argument("--keep", type=int, default=2)
    parser.add_argument("--gan_dir", default=os.path.join(common.REPO, "checkpoints", "mnist",
                                                          "gan"),
                        help="generator to time ('random' for random weights)")
    args = common.parse_or_work(parser, worker, "projection")
    if args is None:
        return
    args.rec_iters = args.rec_iters or (10 if args.quick else 200)
    args.eager_iters = args.eager_iters or (args.rec_iters if args.quick else 20)
    args.reps = args.reps or 1
    args.pair_reps = args.pair_reps or (1 if args.quick else 3)
    args.matmul_n = args.matmul_n or (1024 if args.quick else 2048)
    name = "projection_quick" if args.quick else "projection"
    out_path = args.out or os.path.join(common.RESULTS_DIR, name + ".json")
    start = time.time()
    run = run_all(args)
    summary = summarize(args, run)
    doc = {"benchmark": "projection", "command": "python " + " ".join(sys.argv),
           "quick": args.quick, "L": args.rec_iters, "R": 10, "batch": 50,
           "eager_iters": args.eager_iters, "sweep_iters": args.sweep_iters,
           "seconds": round(time.time() - start, 1), **run["machine"], **common.versions(),
           "flops_per_step_50_images": step_flops(500),
           "generator_forward_flops_per_latent": generator_forward_flops(),
           "summary": summary, "results": run["results"],
           "note": ("ratios are measured in one invocation; absolute speeds depend on other "
                    "load on the machine (see matmul_gflops per setting)")}
    common.write(out_path, doc)
    r = summary["ratios"]
    fmt = lambda k: "n/a" if r.get(k) is None else f"{r[k]:.2f}"  # noqa: E731
    print(f"[bench] {doc['cpu']}: project fp32 = {fmt('project_fp32_vs_eager_fp32')}x eager, "
          f"{fmt('project_fp32_fraction_of_fp32_matmul')} of fp32 matmul; bf16 = "
          f"{fmt('project_bf16_vs_project_fp32')}x fp32 "
          f"({fmt('project_bf16_fraction_of_bf16_matmul')} of bf16 matmul); sub-pixel last "
          f"layer {fmt('subpixel_last_layer_speedup_fp32')}x; fastest "
          f"({summary['fastest_setting']}) = "
          f"{fmt('fastest_vs_plain_tf_fp32_defaults_eager')}x plain TF fp32 defaults; "
          f"-> {out_path}", flush=True)


if __name__ == "__main__":
    main()
