"""Every absl flag of main.py, and the `Config` they make.

`define_flags()` registers the flags (idempotent); `from_flags()` builds the validated
`config.Config` of the parsed command line. This is the only module that reads
`absl.flags.FLAGS`. Each issue's flags have their own section, so independent work on
different modes does not collide.
"""

import dataclasses

from absl import flags

from defense_gan.config import (ATTACKS, BLACKBOX_LABELS, DATASETS, DEFENSES, GRADIENTS,
                                MAGNET_GRADIENTS, MODELS, MODES, PRECISIONS, STRATEGIES,
                                SUB_AUGMENTATIONS, Config, validate)

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
                      "Data set: mnist, fashion_mnist (28x28x1, [0, 1], bundled); celeba "
                      "(64x64x3, [-1, 1], gender; from --data_dir or TFDS).")
    flags.DEFINE_enum("data_source", "bundled", ("bundled", "tfds"),
                      "bundled: the gzipped IDX files in --data_dir (sha256-checked); "
                      "tfds: tensorflow_datasets.load (needs the TFDS data already on disk).")
    flags.DEFINE_string("data_dir", None,
                        "Folder with the bundled IDX files (default: data/<dataset> in the repo); "
                        "for celeba the folder of aligned images with list_attr_celeba.txt "
                        "(default data/celeba); or the TFDS data_dir when --data_source=tfds.")
    flags.DEFINE_integer("seed", 0, "Seed for data order, initialisation, restarts and attacks.")
    flags.DEFINE_enum("precision", "float32", PRECISIONS,
                      "Compute precision of the networks. bfloat16 needs a CPU with AVX512-BF16 or "
                      "AMX (or a GPU); losses, MSE and the restart choice stay float32.")

    # --- training (train_gan, train_classifier) ---------------------------------------------------
    flags.DEFINE_string("train_dir", None,
                        "Where a training mode writes checkpoints, flags.json and TensorBoard "
                        "logs; "
                        "running the same command again resumes there. Default: runs/<dataset>/gan "
                        "or runs/<dataset>/classifier_<model>[_adv[<eps>]][_rec] or "
                        "runs/<dataset>/magnet. Never the shipped "
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
    flags.DEFINE_float("adv_train_eps", 0.15,
                       "FGSM eps for --adv_train, in [0, 1]; also selects the classifier of "
                       "--defense=adv_tr (folder classifier_<model>_adv for 0.15, "
                       "classifier_<model>_adv<eps> otherwise).")
    flags.DEFINE_integer("log_every", 100, "Print progress and write scalars every N steps.")
    flags.DEFINE_integer("image_every", 1000, "Write a sample image grid every N steps.")
    flags.DEFINE_integer("checkpoint_every", 500, "Save a checkpoint every N steps.")
    flags.DEFINE_integer("keep_checkpoints", 3, "How many recent training checkpoints to keep.")

    # --- defense and evaluation (whitebox) --------------------------------------------------------
    flags.DEFINE_enum("model", "F", MODELS,
                      "Classifier architecture: the release's A-F "
                      "(defense_gan/networks.py; F is the release's default).")
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
                      "adv_tr: the adversarially trained classifier (at --adv_train_eps); "
                      "magnet: MagNet's detectors and reformer (--magnet_dir).")
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
    flags.DEFINE_string("sub_model", "E",
                        "blackbox: the substitute's architecture, one of A-F (the paper uses B and "
                        "E).")
    flags.DEFINE_integer("sub_rounds", 6,
                         "blackbox: substitute training rounds (the release's 'data_aug'); "
                         "the training set doubles by Jacobian augmentation between rounds.")
    flags.DEFINE_integer("sub_epochs", 10, "blackbox: substitute training epochs per round.")
    flags.DEFINE_float("sub_lambda", 0.1, "blackbox: Jacobian augmentation step lambda.")
    flags.DEFINE_enum("sub_augmentation", "fixed", SUB_AUGMENTATIONS,
                      "blackbox: fixed: each round appends x + lambda * sign(J) to the "
                      "substitute's points (Papernot et al.); cleverhans2017: the CleverHans "
                      "jacobian_augmentation of late 2017 that the release used (its issue "
                      "#321: it overwrote every other point in place, so about half the new "
                      "points are copies and old labels sit on changed points), to measure how "
                      "much that weaker substitute explains the paper's black-box numbers.")
    flags.DEFINE_integer("sub_init_size", 150,
                         "blackbox: the attacker's initial points, test[0:N] with their true "
                         "labels; the evaluation uses the --num_tests images after them.")
    flags.DEFINE_enum("blackbox_labels", "defended", BLACKBOX_LABELS,
                      "blackbox: who labels the substitute's new points. defended (the "
                      "release): the evaluated classifier behind the Defense-GAN projection, "
                      "whatever --defense is; target: the evaluated defense itself; "
                      "release_untrained (--defense=none or adv_tr): as defended but through a "
                      "randomly initialised, untrained generator (seeded by --seed), which is "
                      "what the release's blackbox() ran for those defenses on our reading of "
                      "its code (its new tf.Session initialised the generator's variables "
                      "afresh).")
    flags.DEFINE_integer("oracle_rec_iters", 0,
                         "blackbox: projection steps L of oracle queries (0: see "
                         "--oracle_fast).")
    flags.DEFINE_integer("oracle_rec_rr", 0,
                         "blackbox: projection restarts R of oracle queries (0: --rec_rr).")
    flags.DEFINE_enum("oracle_precision", "same", ("same",) + PRECISIONS,
                      "blackbox: precision of oracle queries' projection (same: --precision).")
    flags.DEFINE_float("oracle_rec_prune_at", -1.0,
                       "blackbox: projection early stop of oracle queries, as --rec_prune_at "
                       "(with --rec_keep); -1: see --oracle_fast.")
    flags.DEFINE_bool("oracle_fast", True,
                      "blackbox: oracle queries through Defense-GAN project with L=min(100, "
                      "--rec_iters) and early stop after 25% of L keeping --rec_keep restarts "
                      "(where --rec_keep < R); an --oracle_* flag overrides its part; "
                      "--nooracle_fast: the evaluation's projection. Recorded in results.json "
                      "and the run name.")
    flags.DEFINE_bool("train_on_recs", False,
                      "train_classifier: train on reconstructions of the training images "
                      "(Defense-GAN-Rec), read from --recs_dir (built first where missing). "
                      "Default --train_dir runs/<dataset>/classifier_<model>_rec.")
    flags.DEFINE_string("recs_dir", None,
                        "Reconstruction cache of --train_on_recs (default: "
                        "runs/<dataset>/recs/L<L>_R<R>[_bf16][_prune<p>k<keep>]_s<seed>); "
                        "refused when its key.json (generator sha256, L, R, lr, precision, "
                        "early stop, seed) differs from this run's.")
    flags.DEFINE_integer("recs_rec_iters", 100,
                         "--train_on_recs: projection steps L (100, as the black-box oracle's "
                         "fast projection: 50,000 images at L=200 take 2.5 h on a 2-core "
                         "AVX-512/BF16 CPU).")
    flags.DEFINE_integer("recs_rec_rr", 10, "--train_on_recs: projection restarts R.")
    flags.DEFINE_enum("recs_precision", "bfloat16", PRECISIONS,
                      "--train_on_recs: projection precision (float32 where bf16 is emulated).")
    flags.DEFINE_float("recs_rec_prune_at", 0.25,
                       "--train_on_recs: early stop after this fraction of L (0: off).")
    flags.DEFINE_integer("recs_rec_keep", 2,
                         "--train_on_recs: restarts kept after --recs_rec_prune_at.")
    flags.DEFINE_integer("recs_chunk_size", 1000,
                         "--train_on_recs: images per cache chunk (a multiple of "
                         "--eval_batch_size); a killed build resumes at the next chunk.")
    flags.DEFINE_integer("recs_validation", 1000,
                         "--train_on_recs: validation images also reconstructed, for the "
                         "manifest's validation_rec_accuracy (0: none).")
    flags.DEFINE_bool("rec_classifier", False,
                      "whitebox --defense=defense_gan: use the classifier trained on "
                      "reconstructions (checkpoints/<dataset>/classifier_<model>_rec), i.e. "
                      "Defense-GAN-Rec.")
    flags.DEFINE_string("magnet_dir", None,
                        "MagNet checkpoint for --defense=magnet (default: the shipped "
                        "checkpoints/<dataset>/magnet; a --train_dir of train_magnet works).")
    flags.DEFINE_integer("magnet_epochs", 100,
                         "train_magnet: epochs of both auto-encoders (MagNet used 100).")
    flags.DEFINE_integer("magnet_batch_size", 256, "train_magnet: batch size (MagNet used 256).")
    flags.DEFINE_float("magnet_noise", 0.1,
                       "train_magnet: std of the Gaussian noise added to training inputs "
                       "(MagNet's v_noise 0.1).")
    flags.DEFINE_float("magnet_fpr", 0.001,
                       "MagNet: fraction of validation images each detector rejects; sets its "
                       "threshold (MagNet's drop rate 0.001).")
    flags.DEFINE_enum("magnet_gradient", "full", MAGNET_GRADIENTS,
                      "whitebox --defense=magnet: the attacker's gradient. full: the exact "
                      "gradient of classifier(reformer(x)) (the reformer is differentiable); "
                      "bpda: reformer treated as the identity on the backward pass; classifier: "
                      "the undefended classifier's. The detectors are never in the loss.")

    # --- detection and sweeps (issue 14) -----------------------------------------------------
    flags.DEFINE_float("detect_fpr", 0.05,
                       "detect: target false positive rate in (0, 1); the MSE threshold is chosen "
                       "on clean validation images so that at most this fraction is flagged.")
    flags.DEFINE_integer("detect_val", None,
                         "detect: validation images projected to choose the threshold "
                         "(default: --num_tests).")
    flags.DEFINE_bool("detect_whitebox", True,
                      "detect: also use the white-box runs of --model through BPDA (FGSM, "
                      "RAND+FGSM, CW) found in results/<dataset>/whitebox whose generator, L, R, "
                      "lr and precision match, reusing their per-example MSEs.")
    flags.DEFINE_list("adv_sources", None,
                      "detect: run folders with attacked images, comma-separated: a folder whose "
                      "records match the generator, L, R, lr and precision gives its MSEs as "
                      "they are; else its adversarial.npz (x_adv, labels, indices) is projected "
                      "here (resumable per batch). A folder with neither is refused.")
    flags.DEFINE_list("rec_iters_snapshots", None,
                      "detect: smaller L values, comma-separated, each in [1, --rec_iters): the "
                      "run also keeps the projection after each of these steps (the same run's "
                      "first l steps are the l-step projection: constant rate, same seeded "
                      "restarts) and writes it where a detect run at --rec_iters=l finds it, "
                      "so an L sweep projects once, at its largest L. Needs --rec_prune_at=0.")
    flags.DEFINE_integer("detect_bootstrap", 1000,
                         "detect: bootstrap resamples for the AUC's 95% interval.")

    # --- Fashion-MNIST and CelebA (issue 15) --------------------------------------------------

    # --- adaptive attacks (issue 16) ---------------------------------------------------------
    flags.DEFINE_integer("eot_samples", None,
                         "BPDA + EOT: average the attack's gradient over K projections drawn "
                         "with fresh seeds at every attack step (seeds the defender's evaluation "
                         "never uses). K >= 1; unset: plain BPDA with the defender's seed known.")
    flags.DEFINE_integer("attack_rec_iters", None,
                         "L of the projections inside the attack (default: --rec_iters). The "
                         "evaluation always projects with --rec_iters / --rec_rr / --precision.")
    flags.DEFINE_integer("attack_rec_rr", None,
                         "R of the projections inside the attack (default: --rec_rr).")
    flags.DEFINE_enum("attack_precision", None, PRECISIONS,
                      "Precision of the generator inside the attack (default: --precision).")
    flags.DEFINE_enum("pgd_norm", "linf", ("linf", "l2"),
                      "PGD norm: linf (budget --fgsm_eps) or l2 (budget --pgd_eps_l2).")
    flags.DEFINE_float("pgd_step_size", None,
                       "PGD step size (default 2.5 * budget / --pgd_steps, Madry et al.).")
    flags.DEFINE_integer("pgd_restarts", 1,
                         "PGD random restarts; per image the worst case (the restart whose "
                         "final loss on the attacked model is highest) is kept.")
    flags.DEFINE_float("pgd_eps_l2", 1.98,
                       "PGD L2 budget (pixels in [0, 1]). 1.98 = sqrt(0.005 * 784): Athalye et "
                       "al.'s MNIST Defense-GAN distance 0.005 read as a per-pixel mean square.")
    flags.DEFINE_enum("attack_labels", "auto", ("auto", "predicted", "true"),
                      "The labels a whitebox attack moves away from. predicted: the attacked "
                      "model's own prediction on the clean input (CleverHans' default when no "
                      "labels are given, as the release ran FGSM, RAND+FGSM and CW); true: the "
                      "test labels, as robust-accuracy evaluations do (Madry et al., Athalye "
                      "et al.), so an image the defense already gets wrong is not pushed back "
                      "to its true class. auto: true for pgd and latent (the adaptive attacks), "
                      "predicted for fgsm, rand_fgsm and cw (the paper's protocol).")
    flags.DEFINE_integer("latent_iters", 500, "--attack=latent: Adam steps on z.")
    flags.DEFINE_float("latent_lr", 0.05, "--attack=latent: Adam learning rate on z.")
    flags.DEFINE_float("latent_c", 1.0,
                       "--attack=latent: weight c of the classification loss in "
                       "||G(z) - x||^2 + c * margin.")
    flags.DEFINE_string("sweep_eps", "",
                        "Comma-separated budgets in [0, 1] (e.g. 0.05,0.1,0.2,0.3): run the "
                        "attack once per eps and write sweep.json + sweep.png (accuracy vs eps).")
    flags.DEFINE_float("unrolled_memory_gib", 16.0,
                       "--gradient=unrolled: refuse an L whose estimated tape memory exceeds "
                       "this many GiB (checked before anything is allocated).")

    # --- API, export, distribution (issue 17) ------------------------------------------------
    # distribute
    flags.DEFINE_enum("strategy", "default", STRATEGIES,
                      "tf.distribute strategy. default: one device; mirrored: all local GPUs "
                      "(or --cpu_devices logical CPUs); multi_worker: one process per machine, "
                      "cluster from the TF_CONFIG environment variable (whitebox: shards the "
                      "test images by TF_CONFIG's task); tpu: wired, untested. --batch_size "
                      "stays the global batch.")
    flags.DEFINE_integer("cpu_devices", 0,
                         "--strategy=mirrored on a CPU-only machine: split the CPU into N "
                         "logical devices (for testing; 0: do not split).")
    flags.DEFINE_integer("num_shards", 1,
                         "whitebox: split the test batches over N processes (batch k goes to "
                         "shard k mod N); shard 0 waits for the others' records and writes "
                         "results.json. All shards need the same --results_dir (shared disk).")
    flags.DEFINE_integer("shard_index", 0, "whitebox: this process's shard, 0..--num_shards-1.")
    flags.DEFINE_integer("shard_timeout", 3600,
                         "whitebox, sharded: shard 0 gives up (one-line error) after this many "
                         "seconds without a new batch record from the other shards.")
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
