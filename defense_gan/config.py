"""Every command-line flag, validated into one frozen `Config`.

This is the only module that reads `absl.flags.FLAGS`. Everything else receives a `Config`
(or plain values), so library code can be used and tested without flags.

Flag names are a contract: later modes, flagfiles in `flags/` and users' scripts rely on them.
"""

import dataclasses
import json
import os

from absl import flags

MODES = ("train_gan", "train_classifier", "whitebox")
DATASETS = ("mnist", "fashion_mnist", "celeba")
IMPLEMENTED_DATASETS = ("mnist",)
MODELS = ("A", "B", "C", "D", "E", "F")
ATTACKS = ("fgsm", "rand_fgsm", "cw", "pgd")
DEFENSES = ("none", "defense_gan", "adv_tr")
GRADIENTS = ("classifier", "bpda")
PRECISIONS = ("float32", "bfloat16")


class DefenseGanError(Exception):
    """An error for the user: `str(err)` is one line naming the flag or file at fault.
    main.py prints it without a traceback and exits with status 2."""


class ConfigError(DefenseGanError):
    """Bad user input: a flag value, a data file or a checkpoint."""


class TrainingError(DefenseGanError):
    """Training cannot go on (for example a NaN loss); checkpoints already saved are intact."""


# --- what to run -----------------------------------------------------------------------------
flags.DEFINE_enum("mode", "train_gan", MODES, "What to run.")
flags.DEFINE_enum("dataset", "mnist", DATASETS,
                  "Data set. Only mnist is implemented so far; the others are reserved.")
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
                    "Where a training mode writes checkpoints, flags.json and TensorBoard logs; "
                    "running the same command again resumes there. Default: runs/<dataset>/gan "
                    "or runs/<dataset>/classifier_<model>[_adv]. Never the shipped checkpoints/.")
flags.DEFINE_integer("iterations", 20000,
                     "train_gan: generator iterations in total (the paper's release used 200000).")
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
flags.DEFINE_enum("model", "F", MODELS, "Classifier architecture (ORIGINAL.md; F is the default "
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
                  "projection is treated as the identity on the backward pass (Athalye et al.).")
flags.DEFINE_float("fgsm_eps", 0.3, "FGSM / RAND+FGSM / PGD L-inf budget, pixels in [0, 1].")
flags.DEFINE_float("rand_alpha", 0.05, "RAND+FGSM random step alpha (< --fgsm_eps).")
flags.DEFINE_integer("pgd_steps", 40, "PGD iterations.")
flags.DEFINE_integer("cw_iters", 100, "CW-L2 iterations.")
flags.DEFINE_float("cw_lr", 10.0, "CW-L2 learning rate.")
flags.DEFINE_float("cw_c", 100.0, "CW-L2 initial constant.")
flags.DEFINE_integer("num_tests", 1000, "Number of test images to evaluate (from the start).")
flags.DEFINE_integer("eval_batch_size", 50, "Images per evaluation / projection batch.")
flags.DEFINE_string("gan_dir", None,
                    "Generator checkpoint folder (default: the shipped checkpoints/<dataset>/gan). "
                    "Either a shipped-style folder with manifest.json or a --train_dir.")
flags.DEFINE_string("classifier_dir", None,
                    "Classifier checkpoint folder (default: the shipped "
                    "checkpoints/<dataset>/classifier_<model>[_adv]).")
flags.DEFINE_string("results_dir", None,
                    "Where whitebox writes results (default: results/<dataset>/whitebox/<run>).")

FLAGS = flags.FLAGS

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Config:
    """Validated settings of one run. Field names equal flag names."""
    mode: str = "train_gan"
    dataset: str = "mnist"
    data_source: str = "bundled"
    data_dir: str | None = None
    seed: int = 0
    precision: str = "float32"
    train_dir: str | None = None
    iterations: int = 20000
    epochs: int = 10
    train_limit: int = 0
    batch_size: int = 50
    latent_dim: int = 128
    critic_iters: int = 5
    gp_weight: float = 10.0
    gan_lr: float = 1e-4
    classifier_lr: float = 1e-3
    adv_train: bool = False
    adv_train_eps: float = 0.15
    log_every: int = 100
    image_every: int = 1000
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    model: str = "F"
    rec_iters: int = 200
    rec_rr: int = 10
    rec_lr: float = 10.0
    rec_prune_at: float = 0.0
    rec_keep: int = 2
    attack: str = "fgsm"
    defense: str = "defense_gan"
    gradient: str = "classifier"
    fgsm_eps: float = 0.3
    rand_alpha: float = 0.05
    pgd_steps: int = 40
    cw_iters: int = 100
    cw_lr: float = 10.0
    cw_c: float = 100.0
    num_tests: int = 1000
    eval_batch_size: int = 50
    gan_dir: str | None = None
    classifier_dir: str | None = None
    results_dir: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    # Derived paths ------------------------------------------------------------------------
    def resolved_data_dir(self) -> str:
        if self.data_dir:
            return self.data_dir
        return os.path.join(REPO_ROOT, "data", self.dataset)

    def classifier_name(self) -> str:
        return f"classifier_{self.model}" + ("_adv" if self.adv_train else "")

    def resolved_train_dir(self) -> str:
        if self.train_dir:
            return self.train_dir
        name = "gan" if self.mode == "train_gan" else self.classifier_name()
        return os.path.join(REPO_ROOT, "runs", self.dataset, name)

    def resolved_gan_dir(self) -> str:
        return self.gan_dir or os.path.join(REPO_ROOT, "checkpoints", self.dataset, "gan")

    def resolved_classifier_dir(self, adv: bool = False) -> str:
        if self.classifier_dir:
            return self.classifier_dir
        name = f"classifier_{self.model}" + ("_adv" if adv else "")
        return os.path.join(REPO_ROOT, "checkpoints", self.dataset, name)


def _check(cond: bool, flag: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"--{flag}: {message}")


def validate(cfg: Config) -> Config:
    """Raise ConfigError (naming the flag) for values outside their range."""
    _check(cfg.dataset in IMPLEMENTED_DATASETS, "dataset",
           f"'{cfg.dataset}' is reserved but not implemented yet (implemented: "
           f"{', '.join(IMPLEMENTED_DATASETS)})")
    for name in ("iterations", "epochs", "batch_size", "latent_dim", "critic_iters",
                 "log_every", "image_every", "checkpoint_every", "keep_checkpoints",
                 "rec_iters", "rec_rr", "rec_keep", "num_tests", "eval_batch_size", "pgd_steps",
                 "cw_iters"):
        value = getattr(cfg, name)
        _check(value >= 1, name, f"must be a positive integer, got {value}")
    _check(cfg.train_limit >= 0, "train_limit", f"must be >= 0, got {cfg.train_limit}")
    _check(cfg.train_limit == 0 or cfg.train_limit >= cfg.batch_size, "train_limit",
           f"must be 0 (all) or at least --batch_size ({cfg.batch_size}), got {cfg.train_limit}")
    for name in ("gp_weight", "gan_lr", "classifier_lr", "rec_lr", "cw_lr", "cw_c"):
        value = getattr(cfg, name)
        _check(value > 0 and value == value, name, f"must be > 0, got {value}")
    _check(0.0 <= cfg.rec_prune_at < 1.0, "rec_prune_at",
           f"must be in [0, 1) (a fraction of --rec_iters; 0 is off), got {cfg.rec_prune_at}")
    _check(cfg.rec_prune_at == 0.0 or cfg.rec_keep < cfg.rec_rr, "rec_keep",
           f"must be smaller than --rec_rr ({cfg.rec_rr}) when --rec_prune_at is on, or nothing "
           f"is pruned; got {cfg.rec_keep}")
    for name in ("fgsm_eps", "adv_train_eps", "rand_alpha"):
        value = getattr(cfg, name)
        _check(0.0 <= value <= 1.0, name, f"must be in [0, 1] (pixels are in [0, 1]), got {value}")
    _check(cfg.rand_alpha < cfg.fgsm_eps or cfg.attack != "rand_fgsm", "rand_alpha",
           f"must be smaller than --fgsm_eps ({cfg.fgsm_eps}), got {cfg.rand_alpha}")
    if cfg.train_dir and cfg.mode.startswith("train"):
        _check(not os.path.exists(cfg.train_dir) or os.path.isdir(cfg.train_dir), "train_dir",
               f"'{cfg.train_dir}' exists and is not a directory")
        shipped = os.path.join(REPO_ROOT, "checkpoints")
        _check(not os.path.realpath(cfg.train_dir).startswith(os.path.realpath(shipped) + os.sep)
               and os.path.realpath(cfg.train_dir) != os.path.realpath(shipped), "train_dir",
               f"'{cfg.train_dir}' is inside the shipped checkpoints/; train elsewhere and copy "
               "the export/ folder there")
    return cfg


def from_flags() -> Config:
    """The Config of the parsed command line (FLAGS must be parsed)."""
    fields = {f.name: getattr(FLAGS, f.name) for f in dataclasses.fields(Config)}
    return validate(Config(**fields))
