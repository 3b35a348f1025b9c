"""The settings of one run: a frozen `Config`, its validation and its derived paths.

Importing this module registers no flags: the absl flags live in `defense_gan/cli.py`, which
only main.py calls. Library code receives a `Config` (or plain values), so it can be used from
Python and tested without flags. Field names equal flag names: a contract that flagfiles in
`flags/` and users' scripts rely on.
"""

import dataclasses
import json
import os

from defense_gan import paths
from defense_gan.errors import ConfigError, DefenseGanError, TrainingError  # noqa: F401

# Each mode is the module defense_gan/modes/<mode>.py with a `run(cfg)` function.
MODES = ("train_gan", "train_classifier", "whitebox", "blackbox", "detect", "export")
DATASETS = ("mnist", "fashion_mnist", "celeba")
IMPLEMENTED_DATASETS = ("mnist", "fashion_mnist")
MODELS = ("A", "B", "C", "D", "E", "F")
ATTACKS = ("fgsm", "rand_fgsm", "cw", "pgd")
DEFENSES = ("none", "defense_gan", "adv_tr")
GRADIENTS = ("classifier", "bpda")
PRECISIONS = ("float32", "bfloat16")


# Where results/, runs/ and exports/ go: the repository, or the current directory when the
# package is installed (paths.py).
REPO_ROOT = paths.output_root()


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
    # blackbox, Defense-GAN-Rec, MagNet (issue 13)

    # detection and sweeps (issue 14)

    # Fashion-MNIST and CelebA (issue 15)

    # adaptive attacks (issue 16)

    # API, export, distribution (issue 17)
    checkpoints_dir: str | None = None
    export_dir: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    # Derived paths ------------------------------------------------------------------------
    def resolved_data_dir(self) -> str:
        if self.data_dir:
            return self.data_dir
        return os.path.join(paths.data_root(), self.dataset)

    def classifier_name(self) -> str:
        return f"classifier_{self.model}" + ("_adv" if self.adv_train else "")

    def resolved_train_dir(self) -> str:
        if self.train_dir:
            return self.train_dir
        name = "gan" if self.mode == "train_gan" else self.classifier_name()
        return os.path.join(REPO_ROOT, "runs", self.dataset, name)

    def resolved_gan_dir(self) -> str:
        return self.gan_dir or os.path.join(paths.checkpoints_root(self.checkpoints_dir),
                                            self.dataset, "gan")

    def resolved_classifier_dir(self, adv: bool = False) -> str:
        if self.classifier_dir:
            return self.classifier_dir
        name = f"classifier_{self.model}" + ("_adv" if adv else "")
        return os.path.join(paths.checkpoints_root(self.checkpoints_dir), self.dataset, name)


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
        shipped = paths.checkpoints_root(cfg.checkpoints_dir)
        _check(not os.path.realpath(cfg.train_dir).startswith(os.path.realpath(shipped) + os.sep)
               and os.path.realpath(cfg.train_dir) != os.path.realpath(shipped), "train_dir",
               f"'{cfg.train_dir}' is inside the shipped checkpoints/; train elsewhere and copy "
               "the export/ folder there")
    # API, export, distribution (issue 17)
    _check(not cfg.checkpoints_dir or os.path.isdir(cfg.checkpoints_dir), "checkpoints_dir",
           f"'{cfg.checkpoints_dir}' is not a directory")
    _check(not cfg.export_dir or not os.path.exists(cfg.export_dir)
           or os.path.isdir(cfg.export_dir), "export_dir",
           f"'{cfg.export_dir}' exists and is not a directory")
    return cfg


def mode_module(mode: str):
    """The module defense_gan.modes.<mode> (its `run(cfg)` runs the mode)."""
    import importlib
    if mode not in MODES:
        raise ConfigError(f"--mode: '{mode}' is not one of {', '.join(MODES)}")
    try:
        return importlib.import_module(f"defense_gan.modes.{mode}")
    except ModuleNotFoundError as err:
        if err.name != f"defense_gan.modes.{mode}":
            raise
        raise ConfigError(f"--mode: '{mode}' is not implemented yet") from None
