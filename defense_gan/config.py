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
MODES = ("train_gan", "train_classifier", "whitebox", "blackbox", "detect", "export",
         "train_magnet")
DATASETS = ("mnist", "fashion_mnist", "celeba")
IMPLEMENTED_DATASETS = ("mnist", "fashion_mnist", "celeba")
MODELS = ("A", "B", "C", "D", "E", "F")
ATTACKS = ("fgsm", "rand_fgsm", "cw", "pgd", "latent")
DEFENSES = ("none", "defense_gan", "adv_tr", "magnet")
GRADIENTS = ("classifier", "bpda", "unrolled")
PRECISIONS = ("float32", "bfloat16")
MAGNET_GRADIENTS = ("full", "bpda", "classifier")
# The adversarially trained classifiers at this eps keep the folder name classifier_<m>_adv;
# other eps get classifier_<m>_adv<eps> (e.g. classifier_A_adv0.3).
DEFAULT_ADV_TRAIN_EPS = 0.15
# blackbox --oracle_fast: the oracle's projection (about 5x cheaper than L=200, R=10; its
# labels are bulk queries, not a reported number; the evaluation keeps the flags' projection).
ORACLE_FAST_ITERS = 100
ORACLE_FAST_PRUNE_AT = 0.25
# Who labels the black-box substitute's points (see cli.py's --blackbox_labels).
BLACKBOX_LABELS = ("defended", "target", "release_untrained")
# "fixed": x + lambda * sign(J) appended as new points; "cleverhans2017": the CleverHans of
# late 2017 (issue #321), which the release and the paper used, overwrote points in place.
SUB_AUGMENTATIONS = ("fixed", "cleverhans2017")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


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
    sub_model: str = "E"
    sub_rounds: int = 6
    sub_epochs: int = 10
    sub_lambda: float = 0.1
    sub_augmentation: str = "fixed"
    sub_init_size: int = 150
    blackbox_labels: str = "defended"
    oracle_rec_iters: int = 0
    oracle_rec_rr: int = 0
    oracle_precision: str = "same"
    oracle_rec_prune_at: float = -1.0
    oracle_fast: bool = True
    train_on_recs: bool = False
    recs_dir: str | None = None
    recs_rec_iters: int = 100
    recs_rec_rr: int = 10
    recs_precision: str = "bfloat16"
    recs_rec_prune_at: float = 0.25
    recs_rec_keep: int = 2
    recs_chunk_size: int = 1000
    recs_validation: int = 1000
    rec_classifier: bool = False
    magnet_dir: str | None = None
    magnet_epochs: int = 100
    magnet_batch_size: int = 256
    magnet_noise: float = 0.1
    magnet_fpr: float = 0.001
    magnet_gradient: str = "full"

    # detection and sweeps (issue 14)
    detect_fpr: float = 0.05
    detect_val: int | None = None
    detect_whitebox: bool = True
    adv_sources: list | None = None
    rec_iters_snapshots: list | None = None
    detect_bootstrap: int = 1000

    # Fashion-MNIST and CelebA (issue 15)

    # adaptive attacks (issue 16)
    eot_samples: int | None = None       # None: plain BPDA with the defender's seed known
    attack_rec_iters: int | None = None  # None: --rec_iters
    attack_rec_rr: int | None = None     # None: --rec_rr
    attack_precision: str | None = None  # None: --precision
    pgd_norm: str = "linf"
    pgd_step_size: float | None = None   # None: 2.5 * eps / --pgd_steps (Madry et al.)
    pgd_restarts: int = 1
    pgd_eps_l2: float = 1.98             # Athalye et al.'s MNIST budget, see attacks.py
    attack_labels: str = "auto"          # auto: true for pgd/latent, predicted otherwise
    latent_iters: int = 500
    latent_lr: float = 0.05
    latent_c: float = 1.0
    sweep_eps: str = ""
    unrolled_memory_gib: float = 16.0

    # API, export, distribution (issue 17)
    # distribute
    strategy: str = "default"
    cpu_devices: int = 0
    num_shards: int = 1
    shard_index: int = 0
    shard_timeout: int = 3600
    checkpoints_dir: str | None = None
    export_dir: str | None = None

    def oracle_projection(self) -> dict:
        """blackbox: the projection of oracle queries, {rec_iters, rec_rr, rec_prune_at,
        precision}: each --oracle_* flag where it is set, else with --oracle_fast (default)
        L = min(ORACLE_FAST_ITERS, --rec_iters) and early stop at ORACLE_FAST_PRUNE_AT keeping
        --rec_keep restarts (where --rec_keep < R), else the evaluation's own setting."""
        rr = self.oracle_rec_rr or self.rec_rr
        fast = self.oracle_fast
        if self.oracle_rec_prune_at != -1.0:
            prune = self.oracle_rec_prune_at
        elif fast and self.rec_keep < rr:
            prune = ORACLE_FAST_PRUNE_AT
        else:
            prune = self.rec_prune_at
        return {"rec_iters": self.oracle_rec_iters or (
                    min(ORACLE_FAST_ITERS, self.rec_iters) if fast else self.rec_iters),
                "rec_rr": rr, "rec_prune_at": prune,
                "precision": (self.precision if self.oracle_precision == "same"
                              else self.oracle_precision)}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    # Derived paths ------------------------------------------------------------------------
    def resolved_data_dir(self) -> str:
        if self.data_dir:
            return self.data_dir
        return os.path.join(paths.data_root(), self.dataset)

    def classifier_name(self) -> str:
        return classifier_folder(self.model, self.adv_train_eps if self.adv_train else None,
                                 self.train_on_recs)

    def resolved_train_dir(self) -> str:
        if self.train_dir:
            return self.train_dir
        name = {"train_gan": "gan", "train_magnet": "magnet"}.get(self.mode) or \
            self.classifier_name()
        return os.path.join(REPO_ROOT, "runs", self.dataset, name)

    def resolved_gan_dir(self) -> str:
        return self.gan_dir or os.path.join(paths.checkpoints_root(self.checkpoints_dir),
                                            self.dataset, "gan")

    def resolved_classifier_dir(self, adv: bool = False, rec: bool = False) -> str:
        """--classifier_dir, else the shipped classifier: adversarially trained at
        --adv_train_eps (adv), trained on reconstructions (rec), or plain."""
        if self.classifier_dir:
            return self.classifier_dir
        name = classifier_folder(self.model, self.adv_train_eps if adv else None, rec)
        return os.path.join(paths.checkpoints_root(self.checkpoints_dir), self.dataset, name)

    def recs_tag(self) -> str:
        """Names the training-set reconstruction settings, e.g. L200_R10_bf16_prune0.25k2_s0."""
        tag = f"L{self.recs_rec_iters}_R{self.recs_rec_rr}"
        tag += "_bf16" if self.recs_precision == "bfloat16" else ""
        if self.recs_rec_prune_at:
            tag += f"_prune{self.recs_rec_prune_at:g}k{self.recs_rec_keep}"
        return f"{tag}_s{self.seed}"

    def resolved_recs_dir(self) -> str:
        return self.recs_dir or os.path.join(REPO_ROOT, "runs", self.dataset, "recs",
                                             self.recs_tag())

    def resolved_magnet_dir(self) -> str:
        return self.magnet_dir or os.path.join(paths.checkpoints_root(self.checkpoints_dir),
                                               self.dataset, "magnet")


def classifier_folder(model: str, adv_eps: float | None = None, rec: bool = False) -> str:
    """classifier_<model>[_adv[<eps>]][_rec]: the shipped folder and default run name."""
    name = f"classifier_{model}"
    if adv_eps is not None:
        name += "_adv" if adv_eps == DEFAULT_ADV_TRAIN_EPS else f"_adv{adv_eps:g}"
    return name + ("_rec" if rec else "")


def _check(cond: bool, flag: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"--{flag}: {message}")


def validate(cfg: Config) -> Config:
    """Raise ConfigError (naming the flag) for values outside their range."""
    _check(cfg.dataset in IMPLEMENTED_DATASETS, "dataset",
           f"'{cfg.dataset}' is reserved but not implemented yet (implemented: "
           f"{', '.join(IMPLEMENTED_DATASETS)})")
    _check(cfg.dataset != "celeba" or cfg.mode not in ("blackbox", "detect"), "dataset",
           f"celeba has no --mode={cfg.mode} (the paper reports CelebA only white-box, Table 12; "
           "the substitute and detection paths are built for 28x28 grey images)")
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
    _validate_adaptive(cfg)
    _validate_blackbox(cfg)
    _validate_issue13(cfg)
    if cfg.train_dir and cfg.mode.startswith("train"):
        _check(not os.path.exists(cfg.train_dir) or os.path.isdir(cfg.train_dir), "train_dir",
               f"'{cfg.train_dir}' exists and is not a directory")
        shipped = paths.checkpoints_root(cfg.checkpoints_dir)
        _check(not os.path.realpath(cfg.train_dir).startswith(os.path.realpath(shipped) + os.sep)
               and os.path.realpath(cfg.train_dir) != os.path.realpath(shipped), "train_dir",
               f"'{cfg.train_dir}' is inside the shipped checkpoints/; train elsewhere and copy "
               "the export/ folder there")
    # distribute (issue 17)
    _check(cfg.strategy in STRATEGIES, "strategy",
           f"'{cfg.strategy}' is not one of {', '.join(STRATEGIES)}")
    _check(cfg.cpu_devices >= 0, "cpu_devices", f"must be >= 0, got {cfg.cpu_devices}")
    _check(cfg.cpu_devices == 0 or cfg.strategy == "mirrored", "cpu_devices",
           f"splits the CPU for --strategy=mirrored only, not --strategy={cfg.strategy}")
    _check(cfg.num_shards >= 1, "num_shards", f"must be a positive integer, got {cfg.num_shards}")
    _check(0 <= cfg.shard_index < cfg.num_shards, "shard_index",
           f"must be in 0..{cfg.num_shards - 1} (--num_shards={cfg.num_shards}), "
           f"got {cfg.shard_index}")
    _check(cfg.num_shards == 1 or cfg.mode == "whitebox", "num_shards",
           f"only whitebox evaluation is sharded, not --mode={cfg.mode}")
    _check(cfg.num_shards == 1 or cfg.strategy == "default", "num_shards",
           f"--strategy={cfg.strategy} derives the shards from TF_CONFIG; give one or the other")
    _check(cfg.shard_timeout >= 1, "shard_timeout",
           f"must be a positive number of seconds, got {cfg.shard_timeout}")
    # detection (issue 14)
    _check(0.0 < cfg.detect_fpr < 1.0, "detect_fpr",
           f"must be in (0, 1) (a false positive rate), got {cfg.detect_fpr}")
    _check(cfg.detect_val is None or cfg.detect_val >= 1, "detect_val",
           f"the detection threshold is chosen on validation images: need at least 1, got "
           f"{cfg.detect_val}")
    _check(cfg.detect_bootstrap >= 1, "detect_bootstrap",
           f"must be a positive integer, got {cfg.detect_bootstrap}")
    if cfg.adv_sources is not None:
        _check(len(cfg.adv_sources) > 0, "adv_sources",
               "is an empty list (give run folders separated by commas, or leave the flag out)")
        _check(all(s.strip() for s in cfg.adv_sources), "adv_sources",
               f"has an empty entry: {','.join(cfg.adv_sources)!r}")
    parse_snapshots(cfg)
    # API, export, distribution (issue 17)
    _check(not cfg.checkpoints_dir or os.path.isdir(cfg.checkpoints_dir), "checkpoints_dir",
           f"'{cfg.checkpoints_dir}' is not a directory")
    _check(not cfg.export_dir or not os.path.exists(cfg.export_dir)
           or os.path.isdir(cfg.export_dir), "export_dir",
           f"'{cfg.export_dir}' exists and is not a directory")
    return cfg


def parse_snapshots(cfg: Config) -> tuple[int, ...]:
    """--rec_iters_snapshots as sorted unique ints, each in [1, --rec_iters), for --mode=detect
    without early stop; () when not given. Else ConfigError naming the flag."""
    if cfg.rec_iters_snapshots is None:
        return ()
    values = []
    for part in cfg.rec_iters_snapshots:
        try:
            values.append(int(part))
        except ValueError:
            raise ConfigError(f"--rec_iters_snapshots: '{str(part).strip()}' is not an integer "
                              "(expected L values such as 25,50,100)") from None
    _check(len(values) > 0, "rec_iters_snapshots", "is an empty list")
    _check(all(1 <= v < cfg.rec_iters for v in values), "rec_iters_snapshots",
           f"every value must be in [1, --rec_iters={cfg.rec_iters}), got "
           f"{','.join(map(str, values))}")
    _check(cfg.mode == "detect", "rec_iters_snapshots",
           f"only --mode=detect keeps snapshots, not --mode={cfg.mode}")
    _check(cfg.rec_prune_at == 0, "rec_iters_snapshots",
           "an early-stopped projection's first steps are not the smaller L's projection: "
           "use --rec_prune_at=0")
    return tuple(sorted(set(values)))


def l2_budget(cfg) -> bool:
    """True when the attack's budget is an L2 norm (PGD with --pgd_norm=l2: --pgd_eps_l2),
    False when it is an L-inf eps in [0, 1] (--fgsm_eps)."""
    return cfg.attack == "pgd" and cfg.pgd_norm == "l2"


def parse_sweep_eps(text: str, l2: bool = False) -> list[float]:
    """'0.05,0.1,0.3' -> [0.05, 0.1, 0.3] (sorted, unique); '' -> []. Every value must be in
    [0, 1] (an L-inf budget), or >= 0 for an L2 budget (l2=True: PGD with --pgd_norm=l2);
    else ConfigError naming --sweep_eps."""
    if not text.strip():
        return []
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"--sweep_eps: '{part.strip()}' is not a number "
                              "(expected a comma-separated list such as 0.05,0.1,0.3)") from None
        if l2:
            _check(value >= 0.0, "sweep_eps", f"every L2 budget must be >= 0, got {value}")
        else:
            _check(0.0 <= value <= 1.0, "sweep_eps",
                   f"every eps must be in [0, 1] (pixels are in [0, 1]), got {value}")
        values.append(value)
    return sorted(set(values))


def _validate_adaptive(cfg: Config) -> None:
    """The adaptive-attack flags (issue 16)."""
    _check(cfg.eot_samples is None or cfg.eot_samples >= 1, "eot_samples",
           f"must be >= 1 (projections averaged per attack step), got {cfg.eot_samples}")
    for name in ("attack_rec_iters", "attack_rec_rr"):
        value = getattr(cfg, name)
        _check(value is None or value >= 1, name, f"must be a positive integer, got {value}")
    _check(cfg.attack_precision in (None, *PRECISIONS), "attack_precision",
           f"must be one of {', '.join(PRECISIONS)}, got {cfg.attack_precision}")
    _check(cfg.pgd_norm in ("linf", "l2"), "pgd_norm",
           f"must be linf or l2, got {cfg.pgd_norm}")
    _check(cfg.pgd_restarts >= 1, "pgd_restarts",
           f"must be a positive integer, got {cfg.pgd_restarts}")
    _check(cfg.pgd_step_size is None or cfg.pgd_step_size > 0, "pgd_step_size",
           f"must be > 0, got {cfg.pgd_step_size}")
    _check(cfg.pgd_eps_l2 >= 0, "pgd_eps_l2", f"must be >= 0, got {cfg.pgd_eps_l2}")
    budget = cfg.fgsm_eps if cfg.pgd_norm == "linf" else cfg.pgd_eps_l2
    _check(cfg.pgd_step_size is None or cfg.pgd_step_size <= budget or budget == 0,
           "pgd_step_size", f"must not exceed the PGD budget ({budget}), got {cfg.pgd_step_size}")
    for name in ("latent_iters",):
        _check(getattr(cfg, name) >= 1, name, f"must be a positive integer, got "
               f"{getattr(cfg, name)}")
    for name in ("latent_lr", "latent_c", "unrolled_memory_gib"):
        value = getattr(cfg, name)
        _check(value > 0 and value == value, name, f"must be > 0, got {value}")
    parse_sweep_eps(cfg.sweep_eps, l2=l2_budget(cfg))
    needs_gan = cfg.eot_samples is not None or cfg.attack == "latent"
    _check(not needs_gan or cfg.defense == "defense_gan",
           "eot_samples" if cfg.eot_samples is not None else "attack",
           "needs --defense=defense_gan (it attacks the projection)")
    _check(cfg.eot_samples is None or cfg.gradient == "bpda", "eot_samples",
           f"averages BPDA gradients: use it with --gradient=bpda, not {cfg.gradient}")

def _validate_blackbox(cfg: Config) -> None:
    """The black-box flags (issue 13)."""
    _check(cfg.sub_model in MODELS, "sub_model",
           f"'{cfg.sub_model}' is not one of {', '.join(MODELS)} (the paper uses B and E)")
    for name in ("sub_rounds", "sub_epochs", "sub_init_size"):
        value = getattr(cfg, name)
        _check(value >= 1, name, f"must be a positive integer, got {value}")
    _check(0.0 < cfg.sub_lambda <= 1.0, "sub_lambda",
           f"must be in (0, 1] (pixels are in [0, 1]), got {cfg.sub_lambda}")
    _check(cfg.sub_augmentation in SUB_AUGMENTATIONS, "sub_augmentation",
           f"'{cfg.sub_augmentation}' is not one of {', '.join(SUB_AUGMENTATIONS)}")
    _check(cfg.blackbox_labels in BLACKBOX_LABELS, "blackbox_labels",
           f"'{cfg.blackbox_labels}' is not one of {', '.join(BLACKBOX_LABELS)}")
    _check(cfg.blackbox_labels != "release_untrained" or cfg.defense in ("none", "adv_tr"),
           "blackbox_labels", "release_untrained reproduces the release's --defense=none and "
           f"adv_tr runs only (with --defense={cfg.defense} the release labelled through the "
           "trained generator: use defended)")
    for name in ("oracle_rec_iters", "oracle_rec_rr"):
        value = getattr(cfg, name)
        _check(value >= 0, name, f"must be >= 0 (0: the same as --{name[7:]}), got {value}")
    _check(cfg.oracle_precision in ("same",) + PRECISIONS, "oracle_precision",
           f"'{cfg.oracle_precision}' is not one of same, {', '.join(PRECISIONS)}")
    _check(cfg.oracle_rec_prune_at == -1.0 or 0.0 <= cfg.oracle_rec_prune_at < 1.0,
           "oracle_rec_prune_at", "must be -1 (the same as --rec_prune_at) or in [0, 1), got "
           f"{cfg.oracle_rec_prune_at}")
    oracle = cfg.oracle_projection()
    _check(oracle["rec_prune_at"] == 0.0 or cfg.rec_keep < oracle["rec_rr"], "rec_keep",
           f"must be smaller than the oracle's restarts ({oracle['rec_rr']}) when its "
           f"projection prunes (--oracle_rec_prune_at), got {cfg.rec_keep}")


def _validate_issue13(cfg: Config) -> None:
    """Defense-GAN-Rec, MagNet and adversarial-training flags (issue 13)."""
    for name in ("recs_rec_iters", "recs_rec_rr", "recs_rec_keep", "recs_chunk_size",
                 "magnet_epochs", "magnet_batch_size"):
        value = getattr(cfg, name)
        _check(value >= 1, name, f"must be a positive integer, got {value}")
    _check(cfg.recs_precision in PRECISIONS, "recs_precision",
           f"must be one of {', '.join(PRECISIONS)}, got '{cfg.recs_precision}'")
    _check(0.0 <= cfg.recs_rec_prune_at < 1.0, "recs_rec_prune_at",
           f"must be in [0, 1) (0 is off), got {cfg.recs_rec_prune_at}")
    _check(cfg.recs_rec_prune_at == 0.0 or cfg.recs_rec_keep < cfg.recs_rec_rr, "recs_rec_keep",
           f"must be smaller than --recs_rec_rr ({cfg.recs_rec_rr}) when --recs_rec_prune_at is "
           f"on; got {cfg.recs_rec_keep}")
    _check(cfg.recs_chunk_size % cfg.eval_batch_size == 0, "recs_chunk_size",
           f"must be a multiple of --eval_batch_size ({cfg.eval_batch_size}), got "
           f"{cfg.recs_chunk_size}")
    _check(cfg.recs_validation >= 0, "recs_validation",
           f"must be >= 0 (0: no validation reconstructions), got {cfg.recs_validation}")
    _check(not (cfg.train_on_recs and cfg.adv_train), "train_on_recs",
           "cannot be combined with --adv_train (Defense-GAN-Rec trains on reconstructions of "
           "clean images)")
    _check(not cfg.rec_classifier or cfg.defense == "defense_gan", "rec_classifier",
           f"needs --defense=defense_gan (the Rec classifier sees reconstructions), got "
           f"--defense={cfg.defense}")
    _check(cfg.magnet_gradient in MAGNET_GRADIENTS, "magnet_gradient",
           f"must be one of {', '.join(MAGNET_GRADIENTS)}, got '{cfg.magnet_gradient}'")
    _check(0.0 < cfg.magnet_fpr < 0.5, "magnet_fpr",
           f"must be in (0, 0.5) (the fraction of validation images each detector rejects), "
           f"got {cfg.magnet_fpr}")
    _check(0.0 <= cfg.magnet_noise <= 1.0, "magnet_noise",
           f"must be in [0, 1], got {cfg.magnet_noise}")


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
