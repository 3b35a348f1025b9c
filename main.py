"""Defense-GAN (Samangouei, Kabkab, Chellappa, ICLR 2018) in TensorFlow 2 / Keras.

    python main.py --mode=train_gan                  # train the WGAN-GP generator
    python main.py --mode=train_classifier --model=A # train a classifier
    python main.py --mode=whitebox --attack=fgsm     # attack and evaluate the defense
    python main.py --mode=export                     # SavedModel of the defended classifier

Flags are defined in defense_gan/cli.py (`python main.py --help`); flagfiles live in flags/.
This file is a shim: the command line is defense_gan/cli_main.py, which the installed package
also runs as `defense-gan` and `python -m defense_gan`.
"""

from defense_gan.cli_main import run

if __name__ == "__main__":
    run()
