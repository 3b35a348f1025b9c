"""The command line: `python main.py ...`, `python -m defense_gan ...` and the installed
`defense-gan ...` console script all run `run()`.

It parses the flags of defense_gan/cli.py, builds the Config and runs
defense_gan/modes/<mode>.py; a `DefenseGanError` becomes one `error: ...` line and exit code 2.
"""

import os
import sys

# oneDNN is on by default only on AVX-512 CPUs; on AVX2-only CPUs it is 1.6x faster for these
# networks. It must be set before TensorFlow is imported; a user's own setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from absl import app, flags, logging  # noqa: E402

from defense_gan import cli, config  # noqa: E402

HELP_FLAGS = {"help", "?", "helpshort", "helpfull"}
USAGE = """Defense-GAN (Samangouei, Kabkab, Chellappa, ICLR 2018) in TensorFlow 2 / Keras.

    defense-gan --mode=train_gan                  # train the WGAN-GP generator
    defense-gan --mode=train_classifier --model=A # train a classifier
    defense-gan --mode=whitebox --attack=fgsm     # attack and evaluate the defense
    defense-gan --mode=export                     # SavedModel of the defended classifier

(`python main.py` in a checkout is the same command.)
"""


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


def run() -> None:
    """Entry point: define the flags, parse sys.argv, run the mode."""
    cli.define_flags()
    # `--help` lists the flags of the module named by sys.argv[0]; ours live in cli.py.
    for flag in flags.FLAGS.get_flags_for_module(cli.__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    main_module = sys.modules.get("__main__")
    if main_module is not None and not getattr(main_module, "__doc__", None):
        main_module.__doc__ = USAGE
    try:
        app.run(main)
    except SystemExit as stop:
        # absl exits with status 1 after printing the help it was asked for; that is success.
        asked = {a.split("=")[0].lstrip("-") for a in sys.argv[1:]} & HELP_FLAGS
        if stop.code == 1 and asked:
            sys.exit(0)
        raise
