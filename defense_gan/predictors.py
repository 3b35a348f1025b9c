"""Each `--defense` as a batch predictor built from a Config: what a black-box attacker may
query (the oracle), and the loaders of the pieces a defense is made of.

A predictor maps a fixed-size batch of images to labels only (argmax), as the release's
oracle answered (Papernot et al.'s attacker sees labels, not probabilities). A new defense
(e.g. MagNet) plugs in by one function `(cfg, projection, loaded) -> Predictor` added to
PREDICTORS.

    predictor = batch_predictor(cfg, "defense_gan", projection={...})
    labels = predictor.predict(x, seed=[s, k])   # x float32 [batch_size, H, W, C] in [0, 1]
"""

import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf

from defense_gan import classifiers, gan, hardware, networks
from defense_gan import projection as projection_lib
from defense_gan.config import DEFAULT_ADV_TRAIN_EPS


@dataclasses.dataclass
class Predictor:
    """predict(x float32 [batch_size, H, W, C] in [0, 1], seed int32 [2]) -> int64 labels
    [batch_size]. `seed` fixes the randomness of a stochastic defense (the projection's
    restarts) and is ignored by deterministic ones. `settings`: what answers, for results.json;
    `checkpoints`: {name: {folder, sha256}} of the weights it uses."""
    predict: Callable
    batch_size: int
    settings: dict
    checkpoints: dict


@dataclasses.dataclass
class Loaded:
    """What a mode has already loaded, so a predictor built beside it reuses it instead of
    loading it again: `classifier` = (model, manifest) of `evaluated_classifier(cfg)`,
    `magnet` = what `magnet.build_defense` returned for cfg (defended, checkpoints, settings),
    `generator` = (model, manifest, precision) of cfg's generator as `load_projector` loaded it
    (reused by a projection of the same precision).
    """
    classifier: tuple | None = None
    magnet: tuple | None = None
    generator: tuple | None = None

    def evaluated_classifier(self, cfg):
        return self.classifier or evaluated_classifier(cfg)


def evaluated_classifier(cfg):
    """(classifier, manifest) of the classifier `--defense` evaluates: the adversarially
    trained `--model` (at --adv_train_eps) for adv_tr, the Rec one with --rec_classifier, else
    the plain one (--classifier_dir overrides all)."""
    return classifiers.load_classifier(
        cfg.resolved_classifier_dir(adv=cfg.defense == "adv_tr", rec=cfg.rec_classifier),
        cfg.dataset, cfg.model)


def classifier_tag(cfg) -> str:
    """The run-name part after --defense that says which classifier `evaluated_classifier`
    loads: the eps of an adversarially trained one other than 0.15, `_rec` for Rec."""
    tag = ""
    if cfg.defense == "adv_tr" and cfg.adv_train_eps != DEFAULT_ADV_TRAIN_EPS:
        tag += f"{cfg.adv_train_eps:g}"
    return tag + ("_rec" if cfg.rec_classifier else "")


def classifier_settings(cfg) -> dict:
    """The same as run settings: adv_train_eps (other than 0.15), classifier_variant "rec".
    Defaults add nothing, so the fingerprints of earlier runs stay valid."""
    settings = {}
    if cfg.defense == "adv_tr" and cfg.adv_train_eps != DEFAULT_ADV_TRAIN_EPS:
        settings["adv_train_eps"] = cfg.adv_train_eps
    if cfg.rec_classifier:
        settings["classifier_variant"] = "rec"
    return settings


def checkpoint_entry(manifest: dict, **extra) -> dict:
    return {"folder": manifest["folder"], "sha256": manifest["files"], **extra}


def load_projector(cfg, settings: projection_lib.ProjectionSettings, precision: str,
                   image_shape=networks.MNIST_SHAPE, loaded: Loaded | None = None):
    """(projector, generator manifest, precision used) for the generator of `cfg`
    (--gan_dir or the shipped one). bfloat16 falls back to float32 where it would be emulated.
    `loaded.generator` is used instead of loading the generator when its precision is the one
    asked for."""
    precision = hardware.resolve_precision(precision)
    if loaded is not None and loaded.generator is not None and loaded.generator[2] == precision:
        generator, manifest, _ = loaded.generator
    else:
        generator, manifest = gan.load_generator(cfg.resolved_gan_dir(), cfg.dataset, precision)
    projector = projection_lib.Projector(generator, image_shape,
                                         int(manifest.get("latent_dim", 128)), settings)
    return projector, manifest, precision


def projection_settings(cfg, rec_iters: int, rec_rr: int, rec_prune_at: float):
    return projection_lib.ProjectionSettings(rec_iters, rec_rr, cfg.rec_lr,
                                             batch_size=cfg.eval_batch_size,
                                             rec_prune_at=rec_prune_at, rec_keep=cfg.rec_keep)


def _argmax(logits) -> np.ndarray:
    return tf.argmax(logits, axis=1).numpy()


def _classifier_predictor(cfg, projection: dict, loaded: Loaded) -> Predictor:
    """none / adv_tr: the evaluated classifier on x."""
    classifier, manifest = loaded.evaluated_classifier(cfg)
    return Predictor(lambda x, seed: _argmax(classifier(x, training=False)),
                     cfg.eval_batch_size,
                     {"defense": cfg.defense, "classifier": manifest["folder"]},
                     {"classifier": checkpoint_entry(manifest)})


def _defense_gan_predictor(cfg, projection: dict, loaded: Loaded) -> Predictor:
    """The evaluated classifier on P(x), P projected with `projection` ({rec_iters, rec_rr,
    rec_prune_at, precision})."""
    classifier, c_manifest = loaded.evaluated_classifier(cfg)
    settings = projection_settings(cfg, projection["rec_iters"], projection["rec_rr"],
                                   projection["rec_prune_at"])
    projector, g_manifest, precision = load_projector(cfg, settings, projection["precision"],
                                                      loaded=loaded)

    def predict(x, seed):
        x_rec = projector(x, seed)[0]
        return _argmax(classifier(x_rec, training=False))
    described = {"defense": "defense_gan", "classifier": c_manifest["folder"],
                 "rec_iters": settings.rec_iters, "rec_rr": settings.rec_rr,
                 "rec_lr": settings.rec_lr, "precision": precision}
    if settings.pruning:
        described.update(rec_prune_at=settings.rec_prune_at, rec_keep=settings.rec_keep)
    return Predictor(predict, cfg.eval_batch_size, described,
                     {"classifier": checkpoint_entry(c_manifest),
                      "generator": checkpoint_entry(g_manifest,
                                                    iterations=g_manifest.get("iterations"))})


def _magnet_predictor(cfg, projection: dict, loaded: Loaded) -> Predictor:
    """The evaluated classifier on MagNet's reformed input. A label-only oracle has no way to
    say "rejected", so it answers the reformer's label whatever the detectors say."""
    from defense_gan import data, dataset_spec, magnet
    classifier, c_manifest = loaded.evaluated_classifier(cfg)
    if loaded.magnet is not None:
        defended, used, _ = loaded.magnet
    else:
        splits = data.load(cfg.dataset, cfg.data_source, cfg.data_dir)
        defended, used, _ = magnet.build_defense(
            classifier, cfg.resolved_magnet_dir(), cfg.dataset,
            dataset_spec.get(cfg.dataset).image_shape, data.to_float(splits.x_val).numpy(),
            cfg.magnet_fpr)
    return Predictor(lambda x, seed: _argmax(defended.logits(x)[0]), cfg.eval_batch_size,
                     {"defense": "magnet", "classifier": c_manifest["folder"],
                      "answers": "classifier(reformer(x)); detectors ignored (labels only)",
                      "magnet_fpr": cfg.magnet_fpr},
                     {"classifier": checkpoint_entry(c_manifest), **used})


# --defense -> (cfg, projection, loaded) -> Predictor. `projection` is the Defense-GAN projection to
# use ({rec_iters, rec_rr, rec_prune_at, precision}); defenses without one ignore it.
PREDICTORS = {"none": _classifier_predictor, "adv_tr": _classifier_predictor,
              "defense_gan": _defense_gan_predictor, "magnet": _magnet_predictor}


def batch_predictor(cfg, defense: str | None = None, projection: dict | None = None,
                    loaded: Loaded | None = None) -> Predictor:
    """Defense `defense` (default cfg.defense) in front of cfg's evaluated classifier (the
    adversarially trained one when cfg.defense is adv_tr) as a batch predictor. `projection`
    defaults to the evaluation's (--rec_iters, --rec_rr, --rec_prune_at, --precision);
    `loaded`: pieces the caller already holds, reused instead of loaded again."""
    defense = defense or cfg.defense
    if defense not in PREDICTORS:
        raise ValueError(f"no batch predictor for defense '{defense}' "
                         f"(known: {', '.join(PREDICTORS)})")
    projection = projection or {"rec_iters": cfg.rec_iters, "rec_rr": cfg.rec_rr,
                                "rec_prune_at": cfg.rec_prune_at, "precision": cfg.precision}
    return PREDICTORS[defense](cfg, projection, loaded or Loaded())
