"""Defense-GAN (Samangouei, Kabkab, Chellappa, ICLR 2018) in TensorFlow 2 / Keras.

    python main.py --mode=train_gan                  # train the WGAN-GP generator
    python main.py --mode=train_classifier --model=A # train a classifier
    python main.py --mode=whitebox --attack=fgsm     # attack and evaluate the defense

Flags are defined in defense_gan/cli.py; flagfiles live in flags/. This file only parses
flags, builds the Config and runs defense_gan/modes/<mode>.py.
"""

import os
import sys

# oneDNN is on by default only on AVX-512 CPUs; on AVX2-only CPUs it is 1.6x faster for these
# networks. It must be set before TensorFlow is imported; a user's own setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from absl import app, logging  # noqa: E402

from defense_gan import cli, config  # noqa: E402

cli.define_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # TF's saver logs at INFO on every checkpoint
    try:
        cfg = cli.from_flags()
        mode = config.mode_module(cfg.mode)
        mode.run(cfg)
    except config.DefenseGanError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
