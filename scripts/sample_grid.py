"""Write a PNG grid of samples from a generator checkpoint (shipped or a --train_dir).

    python scripts/sample_grid.py --gan_dir checkpoints/mnist/gan --out docs/mnist_samples.png
"""

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from defense_gan import dataset_spec, gan, summaries  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gan_dir", default=os.path.join(REPO, "checkpoints", "mnist", "gan"))
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--out", default=os.path.join(REPO, "docs", "mnist_samples.png"))
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generator, manifest = gan.load_generator(args.gan_dir, args.dataset, flag="gan_dir")
    z = tf.random.stateless_normal([args.rows * args.rows, generator.latent_dim],
                                   seed=[args.seed, 7])
    grid = summaries.image_grid(generator(z).numpy(), rows=args.rows,
                                pixel_range=dataset_spec.get(args.dataset).pixel_range)
    summaries.write_png(args.out, grid)
    print(f"wrote {args.out}: {args.rows * args.rows} samples from {manifest['folder']} "
          f"({manifest.get('iterations')} iterations)")


if __name__ == "__main__":
    main()
