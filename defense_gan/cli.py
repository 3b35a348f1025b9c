"""Every absl flag of main.py, and the `Config` they make.

`define_flags()` registers the flags (idempotent); `from_flags()` builds the validated
`config.Config` of the parsed command line. This is the only module that reads
`absl.flags.FLAGS`. Each issue's flags have their own section, so independent work on
different modes does not collide.
"""

import dataclasses

from absl import flags

from defense_gan.config import (ATTACKS, DATASETS, DEFENSES, GRADIENTS, MODELS, MODES,
                                PRECISIONS, Config, validate)

FLAGS = flags.FLAGS
_DEFINED = False


def define_flags() -> None:
    """Register every flag once (a second call does nothing)."""
    global _DEFINED
    if _DEFINED:
        return
    _DEFINED = True
    # --- what to run -----------------------------------------------------------------------------
    flags.DEFINE_enum("mode", "train_gan", MODES, "What to run.")
    flags.DEFINE_enum("dataset", "mnist", DATASETS,
                      "Data set: mnist, fashion_mnist (28x28x1, [0, 1]); celeba is reserved.")
    flags.DEFINE_enum("data_source", "bundled", ("bundled", "tfds"),
                      "bundled: the gzipped IDX files in --data_dir (sha256-checked); "
                      "tfds: tensorflow_datasets.load (needs the TFDS data already on disk).")
    flags.DEFINE_string("data_dir", None,
                        "Folder with the bundled IDX files (default: data/<dataset> in the repo), "
                        "or the TFDS data_dir when --data_source=tfds.")
    flags.DEFINE_integer("seed", 0, "Seed for data order, initialisation, restarts and attacks.")
    flags.DEFINE_enum("precision", "float32", PRECISIONS,
                      "Compute precision of the networks. bfloat16 needs a CPU with AVX512-BF16 or "
                      "AMX (or a GPU); losses, MSE and the restart choice stay float32.")

    # --- training (train_gan, train_classifier) ---------------------------------------------------
    flags.DEFINE_string("train_dir", None,
                        "Where a training mode writes checkpoints, flags.json and TensorBoard "
                        "logs; "
                        "running the same command again resumes there. Default: runs/<dataset>/gan "
                        "or runs/<dataset>/classifier_<model>[_adv]. Never the shipped "
                        "checkpoints/.")
    flags.DEFINE_integer("iterations", 20000,
                         "train_gan: generator iterations in total (the paper's release used "
                         "200000).")
    flags.DEFINE_integer("epochs", 10, "train_classifier: epochs in total.")
    flags.DEFINE_integer("train_limit", 0, "Use only the first N training images (0: all 50000). "
                         "For smoke tests and quick trials.")
    flags.DEFINE_integer("batch_size", 50, "Training batch size (the release used 50).")
    flags.DEFINE_integer("latent_dim", 128, "Size of the GAN latent vector z.")
    flags.DEFINE_integer("critic_iters", 5, "Critic steps per generator step (WGAN-GP).")
    flags.DEFINE_float("gp_weight", 10.0, "Gradient-penalty weight lambda.")
    flags.DEFINE_float("gan_lr", 1e-4, "Adam learning rate for generator and critic.")
    flags.DEFINE_float("classifier_lr", 1e-3, "Adam learning rate for classifiers.")
    flags.DEFINE_bool("adv_train", False,
                      "train_classifier: adversarial-training baseline, "
                      "loss = (xent(clean) + xent(FGSM(--adv_train_eps))) / 2.")
    flags.DEFINE_float("adv_train_eps", 0.15, "FGSM eps for --adv_train, in [0, 1].")
    flags.DEFINE_integer("log_every", 100, "Print progress and write scalars every N steps.")
    flags.DEFINE_integer("image_every", 1000, "Write a sample image grid every N steps.")
    flags.DEFINE_integer("checkpoint_every", 500, "Save a checkpoint every N steps.")
    flags.DEFINE_integer("keep_checkpoints", 3, "How many recent training checkpoints to keep.")

    # --- defense and evaluation (whitebox) --------------------------------------------------------
    flags.DEFINE_enum("model", "F", MODELS,
                      "Classifier architecture (ORIGINAL.md; F is the default "
                      "of the release).")
    flags.DEFINE_integer("rec_iters", 200, "Projection: gradient-descent steps L.")
    flags.DEFINE_integer("rec_rr", 10, "Projection: random restarts R.")
    flags.DEFINE_float("rec_lr", 10.0, "Projection: learning rate (momentum 0.7).")
    flags.DEFINE_float("rec_prune_at", 0.0,
                       "Projection early stop: after this fraction of --rec_iters steps, only the "
                       "--rec_keep restarts of each image with the lowest MSE go on. In [0, 1); "
                       "0 (default) is off, i.e. the faithful projection.")
    flags.DEFINE_integer("rec_keep", 2, "Projection early stop: restarts per image kept after "
                         "--rec_prune_at (1 .. --rec_rr - 1).")
    flags.DEFINE_enum("attack", "fgsm", ATTACKS, "White-box attack.")
    flags.DEFINE_enum("defense", "defense_gan", DEFENSES,
                      "none: the plain classifier; defense_gan: projection then classifier; "
                      "adv_tr: the adversarially trained classifier.")
    flags.DEFINE_enum("gradient", "classifier", GRADIENTS,
                      "What gradient the attacker gets through Defense-GAN. classifier: the attack "
                      "is computed on the undefended classifier (the release's advice); bpda: the "
                      "projection is treated as the identity on the backward pass (Athalye et "
                      "al.).")
    flags.DEFINE_float("fgsm_eps", 0.3, "FGSM / RAND+FGSM / PGD L-inf budget, pixels in [0, 1].")
    flags.DEFINE_float("rand_alpha", 0.05, "RAND+FGSM random step alpha (< --fgsm_eps).")
    flags.DEFINE_integer("pgd_steps", 40, "PGD iterations.")
    flags.DEFINE_integer("cw_iters", 100, "CW-L2 iterations.")
    flags.DEFINE_float("cw_lr", 10.0, "CW-L2 learning rate.")
    flags.DEFINE_float("cw_c", 100.0, "CW-L2 initial constant.")
    flags.DEFINE_integer("num_tests", 1000, "Number of test images to evaluate (from the start).")
    flags.DEFINE_integer("eval_batch_size", 50, "Images per evaluation / projection batch.")
    flags.DEFINE_string("gan_dir", None,
                        "Generator checkpoint folder (default: the shipped "
                        "checkpoints/<dataset>/gan). "
                        "Either a shipped-style folder with manifest.json or a --train_dir.")
    flags.DEFINE_string("classifier_dir", None,
                        "Classifier checkpoint folder (default: the shipped "
                        "checkpoints/<dataset>/classifier_<model>[_adv]).")
    flags.DEFINE_string("results_dir", None,
                        "Where whitebox writes results (default: "
                        "results/<dataset>/whitebox/<run>).")

    # --- blackbox, Defense-GAN-Rec, MagNet (issue 13) ----------------------------------------

    # --- detection and sweeps (issue 14) -----------------------------------------------------

    # --- Fashion-MNIST and CelebA (issue 15) --------------------------------------------------

    # --- adaptive attacks (issue 16) ---------------------------------------------------------

    # --- API, export, distribution (issue 17) ------------------------------------------------
    flags.DEFINE_string("checkpoints_dir", None,
                        "Folder holding the shipped checkpoints as <dataset>/gan and "
                        "<dataset>/classifier_<model>[_adv] (default: checkpoints/ of the "
                        "repository, or the copy installed with the package; the environment "
                        "variable DEFENSE_GAN_CHECKPOINTS also sets it). --gan_dir and "
                        "--classifier_dir override it per model.")
    flags.DEFINE_string("export_dir", None,
                        "export: where the SavedModel goes (default: exports/<dataset>); "
                        "replaced atomically.")


def from_flags() -> Config:
    """The Config of the parsed command line (FLAGS must be parsed)."""
    fields = {f.name: getattr(FLAGS, f.name) for f in dataclasses.fields(Config)}
    return validate(Config(**fields))
