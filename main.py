"""Defense-GAN (Samangouei, Kabkab, Chellappa, ICLR 2018) in TensorFlow 2 / Keras.

    python main.py --mode=train_gan                  # train the WGAN-GP generator
    python main.py --mode=train_classifier --model=A # train a classifier
    python main.py --mode=whitebox --attack=fgsm     # attack and evaluate the defense

Flags are defined in defense_gan/config.py; flagfiles live in flags/. This file only parses
flags, builds the Config and dispatches on --mode.
"""

import os
import sys

# oneDNN is on by default only on AVX-512 CPUs; on AVX2-only CPUs it is 1.6x faster for these
# networks. It must be set before TensorFlow is imported; a user's own setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from absl import app, logging  # noqa: E402

from defense_gan import config  # noqa: E402


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # TF's saver logs at INFO on every checkpoint
    try:
        cfg = config.from_flags()
        if cfg.mode == "train_gan":
            from defense_gan.modes import train_gan as mode
        elif cfg.mode == "train_classifier":
            from defense_gan.modes import train_classifier as mode
        else:
            from defense_gan.modes import whitebox as mode
        mode.run(cfg)
    except config.DefenseGanError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
