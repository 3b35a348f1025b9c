"""Where a projection step's time goes: each generator layer's forward + input gradient, timed
alone at the projection's shape (50 images x R=10 = 500 latent vectors), against the full
step and the matmul peak measured in the same process.

    python benchmarks/layers.py            # fp32 (and bf16 where the CPU has it); ~1 minute

This explains the fraction of the matmul peak that benchmarks/projection.py reports: the two
large transposed convolutions run close to the peak, while the small layers and the
element-wise work (ReLU and its mask, the crop and its gradient, sigmoid, the MSE, momentum)
are memory-bound. "other" is the full step minus the sum of the layers.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as main.py
import common  # noqa: E402
from projection import IMAGE, LATENT_DIM, DIM, load_generator, step_flops  # noqa: E402

ROWS = 500  # 50 images x R = 10


def layer_flops(rows: int) -> dict:
    """Forward MAC FLOPs (2 per MAC) of each generator layer for `rows` latent vectors, with
    the convention of projection.generator_forward_flops (they sum to it)."""
    fc = LATENT_DIM * 16 * 4 * DIM
    d1 = 16 * 4 * DIM * 2 * DIM * 25
    d2 = 49 * 2 * DIM * DIM * 25
    d3 = 196 * DIM * 25
    return {k: 2 * v * rows for k, v in (("fc", fc), ("deconv1", d1), ("deconv2", d2),
                                         ("deconv3", d3))}


def best_seconds(fn, reps: int, rounds: int = 3) -> float:
    fn()
    return min(sum(common.timed(fn, reps)) / reps for _ in range(rounds))


def measure(precision: str, gan_dir: str, reps: int) -> dict:
    import tensorflow as tf

    from defense_gan import networks
    g, source = load_generator(precision, gan_dir)
    dt = tf.bfloat16 if precision == "bfloat16" else tf.float32
    z = tf.random.stateless_normal([ROWS, LATENT_DIM], seed=[0, 1])
    x = tf.random.stateless_uniform([ROWS, *IMAGE], seed=[0, 2])
    h0 = tf.cast(g.reshape(g.fc(z)), dt)
    h1 = tf.cast(g.crop(g.deconv1(h0)), dt)
    h2 = tf.cast(g.deconv2(h1), dt)
    parts = {"fc": (g.fc, tf.cast(z, dt)), "deconv1": (g.deconv1, h0),
             "deconv2": (g.deconv2, h1),
             "deconv3": (lambda h: networks.subpixel_conv_transpose(g.deconv3, h), h2)}

    def fwd_bwd(f):
        @tf.function
        def run(h):
            with tf.GradientTape() as tape:
                tape.watch(h)
                y = tf.cast(f(h), tf.float32)
            return tape.gradient(y, h, output_gradients=tf.ones_like(y))
        return run

    @tf.function
    def full_step(z):  # the projection's step body (defense_gan.projection.Projector)
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = tf.reduce_sum(tf.reduce_mean(tf.square(g(z, training=False) - x), [1, 2, 3]))
        return tape.gradient(loss, z)

    flops = layer_flops(ROWS)
    layers = {}
    for name, (f, h) in parts.items():
        run = fwd_bwd(f)
        sec = best_seconds(lambda: run(h).numpy(), reps)
        layers[name] = {"seconds": sec, "gflops": 2 * flops[name] / sec / 1e9}
    step = best_seconds(lambda: full_step(z).numpy(), reps)
    peak = common.matmul_gflops(precision, 2048, 5)
    other = step - sum(v["seconds"] for v in layers.values())
    for v in layers.values():
        v["share_of_step"] = v["seconds"] / step
        v["fraction_of_matmul_peak"] = v["gflops"] / peak
    return {"precision": precision, "generator": source, "rows": ROWS,
            "matmul_gflops": peak, "step_seconds": step,
            "step_gflops": step_flops(ROWS) / step / 1e9,
            "step_fraction_of_matmul_peak": step_flops(ROWS) / step / 1e9 / peak,
            "layers": layers, "other_seconds": other, "other_share_of_step": other / step}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=20, help="calls per timing (best of 3)")
    parser.add_argument("--gan_dir", default=os.path.join(common.REPO, "checkpoints", "mnist",
                                                          "gan"))
    parser.add_argument("--out", default=os.path.join(common.RESULTS_DIR, "layers.json"))
    args = parser.parse_args()
    from defense_gan import hardware
    precisions = ["float32"] + (["bfloat16"] if hardware.bf16_cpu_flags() else [])
    start = time.time()
    doc = {"benchmark": "layers", "command": "python " + " ".join(sys.argv),
           **common.machine(), "TF_ENABLE_ONEDNN_OPTS": os.environ["TF_ENABLE_ONEDNN_OPTS"],
           "results": []}
    for precision in precisions:
        r = measure(precision, args.gan_dir, args.reps)
        doc["results"].append(r)
        cells = ", ".join(f"{k} {v['gflops']:.0f} GFLOP/s ({v['fraction_of_matmul_peak']:.0%} "
                          f"of peak, {v['share_of_step']:.0%} of the step)"
                          for k, v in r["layers"].items())
        print(f"[bench] {precision}: step {r['step_seconds'] * 1e3:.1f} ms = "
              f"{r['step_fraction_of_matmul_peak']:.0%} of {r['matmul_gflops']:.0f} GFLOP/s "
              f"matmul; {cells}; other (element-wise) {r['other_share_of_step']:.0%}",
              flush=True)
    doc["seconds"] = round(time.time() - start, 1)
    doc.update(common.versions())
    common.write(args.out, doc)
    print(f"[bench] {doc['cpu']} -> {args.out}")


if __name__ == "__main__":
    main()
