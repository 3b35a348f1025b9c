"""Peak memory of --gradient=unrolled (the gradient through all L projection steps), to
calibrate `projection.UNROLLED_BYTES_PER_ELEMENT`.

    python benchmarks/unrolled_memory.py [--batch 5 --restarts 2 --steps 5,10,20]

Each point runs in a fresh process: the shipped-architecture generator (random weights; memory
does not depend on them), classifier F, one gradient of the classifier's loss through
`Projector.unrolled`, and the process's peak RSS. The slope of peak RSS over L, divided by
batch * restarts * generator activation elements, is the bytes per element per step; the
script prints it with the estimate for 50 images x R=10 and the largest L for 16 GiB, and
writes benchmarks/results/unrolled_memory.json.
"""

import argparse
import json
import os
import resource
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def one(batch, restarts, steps):
    import tensorflow as tf
    from defense_gan import networks, projection
    generator = networks.build(networks.Generator(), (128,))
    classifier = networks.build(networks.Classifier("F"), networks.MNIST_SHAPE)
    settings = projection.ProjectionSettings(steps, restarts, batch_size=batch)
    projector = projection.Projector(generator, networks.MNIST_SHAPE, 128, settings)
    x = tf.random.uniform([batch, *networks.MNIST_SHAPE])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    @tf.function
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = classifier(projector.unrolled(x, tf.constant([0, 0])), training=False)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
                tf.zeros([batch], tf.int64), logits))
        return tape.gradient(loss, x)
    g = grad(x)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"batch": batch, "restarts": restarts, "steps": steps, "peak_bytes": peak,
            "before_bytes": base, "grad_abs_sum": float(tf.reduce_sum(tf.abs(g)))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--steps", default="5,10,20")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.batch, args.restarts, int(args.steps))))
        return
    points = []
    for steps in [int(s) for s in args.steps.split(",")]:
        out = subprocess.run([sys.executable, __file__, "--one", "--batch", str(args.batch),
                              "--restarts", str(args.restarts), "--steps", str(steps)],
                             capture_output=True, text=True, check=True).stdout
        points.append(json.loads(out.strip().splitlines()[-1]))
        print(points[-1], flush=True)
    import numpy as np

    from defense_gan import networks, projection
    generator = networks.build(networks.Generator(), (128,))
    elements = projection.generator_activation_elements(generator, networks.MNIST_SHAPE)
    slope = np.polyfit([p["steps"] for p in points], [p["peak_bytes"] for p in points], 1)[0]
    per_element = slope / (args.batch * args.restarts * elements)
    need = per_element * elements * 50 * 10 * 200
    fits = int(16 * 2 ** 30 // (per_element * elements * 50 * 10))
    summary = {"points": points, "activation_elements_per_latent": elements,
               "bytes_per_element_per_step": per_element,
               "estimate_L200_B50_R10_gib": need / 2 ** 30, "largest_L_16gib_B50_R10": fits}
    print(json.dumps(summary, indent=2))
    os.makedirs(os.path.join(REPO, "benchmarks", "results"), exist_ok=True)
    with open(os.path.join(REPO, "benchmarks", "results", "unrolled_memory.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
