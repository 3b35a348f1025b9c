"""The black-box attacker's substitute (Papernot et al. 2017, "Practical Black-Box Attacks
against Machine Learning"), trained as the authors' release did (CleverHans' tutorial):

- start from the attacker's initial points (test[0:150]) with their true labels;
- round r = 0 .. rounds-1: train the substitute `epochs` epochs on the current set (Adam, a
  fresh optimizer each round, batches as CleverHans' `model_train`); unless it is the last
  round, double the set by Jacobian-based augmentation
      x_new = x + lambda * sign(d softmax(sub(x))[y] / dx)   (not clipped, as the release)
  and label only the new points with the oracle (labels, not probabilities);
- 150 initial points and 6 rounds end with 4,800 points and 4,650 oracle queries.

Resumable: each finished round is saved (weights, data set, metrics) under `state_dir`, and
each batch of oracle labels as soon as it is answered, so a killed run resumes from the last
round and re-asks the oracle nothing. Each round reseeds its own randomness (shuffles and
dropout), so a resumed run ends with the very substitute an uninterrupted one would have.
"""

import io
import json
import os
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from defense_gan.files import write_bytes_atomic, write_json_atomic

ROUND_JSON = "round.json"


# --- Jacobian-based dataset augmentation -------------------------------------------------------
def jacobian_signs(model_fn, x, y, batch_size: int = 500) -> tf.Tensor:
    """sign(d p_y(x) / dx) per example, p = softmax(model_fn(x)) (the release differentiated
    the substitute's softmax output, CleverHans' `jacobian_graph`).

    model_fn: x float32 [n, H, W, C] -> logits [n, K]; x: float32 [N, H, W, C]; y: int [N]
    in [0, K). Returns float32 [N, H, W, C] in {-1, 0, 1}.
    """
    x = tf.convert_to_tensor(x, tf.float32)
    y = tf.convert_to_tensor(y, tf.int64)
    out = []
    for lo in range(0, int(x.shape[0]), batch_size):
        xb, yb = x[lo:lo + batch_size], y[lo:lo + batch_size]
        with tf.GradientTape() as tape:
            tape.watch(xb)
            probs = tf.nn.softmax(tf.cast(model_fn(xb), tf.float32))
            # Examples do not interact, so the gradient of the sum is per-example.
            picked = tf.reduce_sum(tf.gather(probs, yb, axis=1, batch_dims=1))
        out.append(tf.sign(tape.gradient(picked, xb)))
    return tf.concat(out, axis=0)


def jacobian_augmentation(model_fn, x, y, lam: float, batch_size: int = 500) -> tf.Tensor:
    """The set doubled: [x; x + lam * jacobian_signs(model_fn, x, y)] (float32 [2N, H, W, C];
    the new half is not clipped to [0, 1], as in the release). The new points still need the
    oracle's labels."""
    x = tf.convert_to_tensor(x, tf.float32)
    return tf.concat([x, x + lam * jacobian_signs(model_fn, x, y, batch_size)], axis=0)


def cleverhans2017_layout(x, signs, lam: float) -> np.ndarray:
    """The doubled set as CleverHans' `jacobian_augmentation` made it in late 2017 (the version
    the release and the paper used; CleverHans issue #321, fixed after the paper):
        X = [x; x];  for i in 0 .. N-1, in order:  X[2 i] = X[i] + lam * signs[i]
    so the even slots of both halves are overwritten, chained through slots already changed
    (X[2 i] builds on X[i], itself perturbed when i is even), while the odd slots of the new
    half stay copies of old points. The caller keeps the old labels on the first half and asks
    the oracle for the second, as the release's train_sub did.

    x, signs: float32 [N, ...] (signs: sign of the Jacobian at x[i] for label y[i]). Returns
    float32 [2N, ...]."""
    x = np.asarray(x, np.float32)
    out = np.concatenate([x, x])
    signs = np.asarray(signs, np.float32)
    for i in range(len(x)):
        out[2 * i] = out[i] + lam * signs[i]
    return out


# --- training ------------------------------------------------------------------------------------
def batch_indices(n: int, batch_size: int, rng: np.random.RandomState) -> list:
    """One epoch as CleverHans' `model_train` made it: a shuffled order cut into ceil(n / b)
    batches of exactly b (the last one shifted back to end at n; b is capped at n)."""
    b = min(batch_size, n)
    order = np.arange(n)
    rng.shuffle(order)
    batches = []
    for i in range(-(-n // b)):
        end = min((i + 1) * b, n)
        batches.append(order[end - b:end])
    return batches


def _reseed_dropout(model, seed: int) -> None:
    """Set the state of every dropout layer's RNG, so a round's dropout masks depend only on
    `seed` (Keras layers otherwise carry their RNG state from round to round)."""
    for i, layer in enumerate(model._flatten_layers(include_self=False)):
        generator = getattr(layer, "seed_generator", None)
        if generator is not None:
            generator.state.assign(tf.constant([seed, i], generator.state.dtype))


def train_round(model, x, y, *, epochs: int, batch_size: int, lr: float, seed) -> float:
    """Train `model` (x -> logits) on (x float32 [N, ...], y int [N]) for `epochs` epochs with
    a fresh Adam(lr), batches from `batch_indices` with RandomState(seed); dropout reseeded
    from `seed`. Returns the mean cross-entropy of the last epoch."""
    seed = [int(s) for s in np.atleast_1d(seed)]
    rng = np.random.RandomState(seed)
    _reseed_dropout(model, int(np.random.RandomState(seed).randint(1 << 30)))
    optimizer = keras.optimizers.Adam(lr)
    variables = model.trainable_variables
    optimizer.build(variables)

    @tf.function(reduce_retracing=True)
    def step(xb, yb):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(xb, training=True), tf.float32)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, logits))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int64)
    loss = float("nan")
    for _ in range(epochs):
        losses = [float(step(x[idx], y[idx])) for idx in batch_indices(len(x), batch_size, rng)]
        loss = float(np.mean(losses))
    return loss


def accuracy(model, x, y, batch_size: int = 500) -> float:
    """Top-1 accuracy of model (x -> logits) on x float32 [N, ...] against y int [N]."""
    correct = 0
    for lo in range(0, len(x), batch_size):
        pred = tf.argmax(model(x[lo:lo + batch_size], training=False), axis=1).numpy()
        correct += int((pred == y[lo:lo + batch_size]).sum())
    return correct / len(x)


# --- the resumable loop -------------------------------------------------------------------------
def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _load_npz(path: str) -> dict:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


class SubstituteState:
    """The files of one substitute training under `folder`:
      round_RR/        weights.*, data.npz (the round's training set x, y), round.json (its
                       metrics); a folder appears complete or not at all (renamed into place)
      augment_RR.npz   the new points made after round RR (before they are labelled)
      labels_RR/batch_KKKKK.npz   the oracle's labels of batch K of those points
    Every file carries `tag` (a fingerprint of the settings); files with another tag are
    ignored and overwritten."""

    def __init__(self, folder: str, tag: str):
        self.folder, self.tag = folder, tag
        os.makedirs(folder, exist_ok=True)

    def _round_dir(self, r):
        return os.path.join(self.folder, f"round_{r:02d}")

    def round_info(self, r):
        try:
            with open(os.path.join(self._round_dir(r), ROUND_JSON)) as f:
                info = json.load(f)
        except (OSError, ValueError):
            return None
        if info.get("tag") != self.tag:
            return None
        return {k: v for k, v in info.items() if k != "tag"}

    def save_round(self, r, model, x, y, info: dict) -> None:
        tmp = tempfile.mkdtemp(prefix=".tmp-round-", dir=self.folder)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; results are meant to be shared
        try:
            tf.train.Checkpoint(model=model).write(os.path.join(tmp, "weights"))
            write_bytes_atomic(os.path.join(tmp, "data.npz"), _npz_bytes(x=x, y=y))
            write_json_atomic(os.path.join(tmp, ROUND_JSON), dict(info, tag=self.tag))
            target = self._round_dir(r)
            if os.path.exists(target):
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def update_round_info(self, r, info: dict) -> None:
        write_json_atomic(os.path.join(self._round_dir(r), ROUND_JSON), dict(info, tag=self.tag))

    def load_round(self, r, model):
        """Restore round r's weights into `model`; returns (x, y)."""
        tf.train.Checkpoint(model=model).read(
            os.path.join(self._round_dir(r), "weights")).assert_existing_objects_matched()
        data = _load_npz(os.path.join(self._round_dir(r), "data.npz"))
        return data["x"], data["y"]

    def weights_files(self, r) -> list:
        d = self._round_dir(r)
        return sorted(os.path.join(d, n) for n in os.listdir(d) if n.startswith("weights."))

    def _tagged(self, path, key):
        if not os.path.isfile(path):
            return None
        data = _load_npz(path)
        return data[key] if str(data.get("tag")) == self.tag else None

    def augmented(self, r):
        return self._tagged(os.path.join(self.folder, f"augment_{r:02d}.npz"), "x")

    def save_augmented(self, r, x_new):
        write_bytes_atomic(os.path.join(self.folder, f"augment_{r:02d}.npz"),
                           _npz_bytes(x=x_new, tag=np.array(self.tag)))

    def _labels_path(self, r, k):
        return os.path.join(self.folder, f"labels_{r:02d}", f"batch_{k:05d}.npz")

    def labels(self, r, k):
        return self._tagged(self._labels_path(r, k), "y")

    def save_labels(self, r, k, y):
        write_bytes_atomic(self._labels_path(r, k), _npz_bytes(y=y, tag=np.array(self.tag)))


def label_with_oracle(oracle, x_new, *, batch_size: int, state: SubstituteState, r: int,
                      seed_of, progress=None):
    """The oracle's labels of x_new (float32 [M, ...]) in fixed batches of `batch_size` (the
    last padded by repeating its last image), each batch saved as soon as it is answered and
    reused on resume. oracle(x [batch_size, ...], seed) -> int labels [batch_size];
    seed_of(k) is batch k's seed. Returns (labels int64 [M], queries asked now)."""
    from defense_gan.projection import pad_batch
    labels, asked = [], 0
    m = len(x_new)
    for k, lo in enumerate(range(0, m, batch_size)):
        count = min(batch_size, m - lo)
        y = state.labels(r, k)
        if y is None or len(y) != count:
            x = pad_batch(np.asarray(x_new[lo:lo + count], np.float32), batch_size)
            y = np.asarray(oracle(x, seed_of(k)), np.int64)[:count]
            state.save_labels(r, k, y)
            asked += count
            if progress:
                progress(lo + count, m)
        labels.append(y)
    return np.concatenate(labels), asked


def train_substitute(model, x0, y0, *, oracle, oracle_batch_size: int, oracle_seed,
                     state: SubstituteState, rounds: int, epochs: int, lam: float,
                     batch_size: int, lr: float, seed: int, eval_x, eval_y,
                     progress=print, on_round=None, augmentation: str = "fixed") -> list:
    """Train the substitute `model` (a built classifier, x -> logits) as the module docstring
    says, resuming from `state`.

    x0, y0: the initial points float32 [N0, H, W, C] in [0, 1] and their labels int [N0].
    oracle(x [oracle_batch_size, ...], seed) -> int labels; oracle_seed(r, k) -> the seed
      of batch k of the points made after round r.
    eval_x, eval_y: images and true labels on which each round's accuracy is measured.
    on_round(info): called once per round finished in this process (not for resumed ones).
    augmentation: "fixed" (x + lam * sign(J) appended) or "cleverhans2017"
      (`cleverhans2017_layout`, the release's augmentation).
    Returns one dict per round: round, train_size, oracle_queries (the queries spent on its
    training set, cumulative), loss (last epoch), substitute_accuracy (on eval_x),
    train_seconds, and for every round but the last: new_queries (the points labelled after
    it), oracle_agreement_new_points (how often the substitute already agreed with the
    oracle's labels of them), oracle_seconds (None when the labelling spanned processes).
    """
    history = []
    x, y = np.asarray(x0, np.float32), np.asarray(y0, np.int64)
    start = 0
    for r in range(rounds):  # the last round saved with these settings
        info = state.round_info(r)
        if info is None:
            break
        history.append(info)
        start = r + 1
    if start:
        x, y = state.load_round(start - 1, model)
        progress(f"[substitute] resumed after round {start}/{rounds} ({len(x)} points, "
                 f"{history[-1]['oracle_queries']} oracle queries so far)")
        x, y = _augment_and_label(model, x, y, start - 1, rounds, oracle, oracle_batch_size,
                                  oracle_seed, state, lam, history, progress, augmentation)
    for r in range(start, rounds):
        t = time.time()
        loss = train_round(model, x, y, epochs=epochs, batch_size=batch_size, lr=lr,
                           seed=[seed, r])
        info = {"round": r, "train_size": int(len(x)), "loss": loss,
                "substitute_accuracy": accuracy(model, eval_x, eval_y),
                "oracle_queries": (history[-1]["oracle_queries"] + history[-1]["new_queries"]
                                   if history else 0),
                "train_seconds": time.time() - t}
        state.save_round(r, model, x, y, info)
        history.append(info)
        progress(f"[substitute] round {r + 1}/{rounds}: trained on {len(x)} points, loss "
                 f"{loss:.4f}, substitute accuracy {info['substitute_accuracy']:.4f} on "
                 f"{len(eval_x)} evaluation images, {info['oracle_queries']} oracle queries")
        x, y = _augment_and_label(model, x, y, r, rounds, oracle, oracle_batch_size,
                                  oracle_seed, state, lam, history, progress, augmentation)
        if on_round:
            on_round(history[-1])
    return history


def _augment_and_label(model, x, y, r, rounds, oracle, oracle_batch_size, oracle_seed, state,
                       lam, history, progress, augmentation="fixed"):
    """After round r (unless it is the last): the doubled set with the oracle's labels of the
    new half; records the queries in history[r]. Returns (x, y)."""
    if r >= rounds - 1:
        return x, y
    model_fn = lambda t: model(t, training=False)  # noqa: E731
    if augmentation == "cleverhans2017":  # the first half changes too: the file holds both
        doubled = state.augmented(r)
        if doubled is None or len(doubled) != 2 * len(x):
            doubled = cleverhans2017_layout(x, jacobian_signs(model_fn, x, y).numpy(), lam)
            state.save_augmented(r, doubled)
        x, x_new = doubled[:len(x)], doubled[len(x):]
    else:
        x_new = state.augmented(r)
        if x_new is None or len(x_new) != len(x):
            x_new = jacobian_augmentation(model_fn, x, y, lam).numpy()[len(x):]
            state.save_augmented(r, x_new)
    t = time.time()
    y_new, asked = label_with_oracle(
        oracle, x_new, batch_size=oracle_batch_size, state=state, r=r,
        seed_of=lambda k: oracle_seed(r, k),
        progress=lambda done, m: progress(f"[substitute] oracle labelled {done}/{m} new points "
                                          f"of round {r + 1}"))
    info = history[r]
    if "new_queries" not in info:  # else recorded by an earlier process
        pred = np.concatenate([tf.argmax(model(x_new[lo:lo + 500], training=False), 1).numpy()
                               for lo in range(0, len(x_new), 500)])
        info.update(new_queries=int(len(x_new)),
                    oracle_agreement_new_points=float(np.mean(pred == y_new)),
                    oracle_seconds=time.time() - t if asked == len(x_new) else None)
        state.update_round_info(r, info)
    return np.concatenate([x, x_new]), np.concatenate([y, y_new])
