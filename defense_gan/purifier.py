"""`Purifier`: the Defense-GAN projection x -> G(z*) for any number of images, seeded.

It wraps `projection.Projector` (fixed batch of `batch_size` images per call) and hides the
fixed batch: N images are cut into chunks of `batch_size`, the last one padded with
`projection.pad_batch`, and chunk k is projected with the stateless seed [seed, k]. This is
exactly how `--mode=whitebox` (evaluation.py) projects its batches, so with the same seed,
batch size and settings the outputs are the same as the command line's.

The chunk loop runs in one `tf.function` with input signature (float32 [None, H, W, C],
int32 []), so it traces once, works on symbolic tensors (SavedModel, Keras) and exports.
"""

import io

import numpy as np
import tensorflow as tf

from defense_gan import hardware, projection


def check_images(x, image_shape, name: str = "x"):
    """x (numpy array, tf.Tensor or nested list) -> float32 tf.Tensor [N, *image_shape].

    Raises ValueError naming `name` when x is not a float type (uint8 pixels must be divided
    by 255 first), not shaped [N, *image_shape], or (for concrete values) not finite and in
    [0, 1]. Symbolic tensors are checked in the graph instead (`Purifier.project`).
    """
    if not isinstance(x, (tf.Tensor, tf.Variable, np.ndarray)):
        x = np.asarray(x)
    dtype = tf.as_dtype(x.dtype)
    want = f"float32 pixels in [0, 1] shaped [N, {', '.join(map(str, image_shape))}]"
    if not dtype.is_floating:
        raise ValueError(f"{name}: dtype {dtype.name} is not a float type; pass {want} "
                         "(divide uint8 images by 255)")
    shape = tuple(x.shape)
    if len(shape) != 1 + len(image_shape) or tuple(shape[1:]) != tuple(image_shape):
        raise ValueError(f"{name}: expected {want}, got shape {list(shape)}")
    x = tf.cast(x, tf.float32)
    if tf.executing_eagerly() and shape[0]:
        lo, hi = float(tf.reduce_min(x)), float(tf.reduce_max(x))
        if not (0.0 <= lo and hi <= 1.0):  # NaN fails both
            raise ValueError(f"{name}: pixel values must be finite and in [0, 1], got min {lo} "
                             f"max {hi}" + (" (uint8 range? divide by 255)" if hi > 1 else ""))
    return x


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or \
            not -2 ** 31 <= int(seed) < 2 ** 31:
        raise ValueError(f"seed: must be an int32 integer, got {seed!r}")
    return int(seed)


def _precision_of(model) -> str:
    """'bfloat16' if any layer of `model` computes in bfloat16, else 'float32'."""
    layers = getattr(model, "layers", None) or []
    return "bfloat16" if any(getattr(layer, "compute_dtype", None) == "bfloat16"
                             for layer in layers) else "float32"


class Purifier(tf.Module):
    """Projects images onto the range of a generator (Defense-GAN's defense).

    Args:
      generator: a generator model z float32 [M, latent_dim] -> images float32 [M, H, W, C]
        in [0, 1] (e.g. `defense_gan.load_generator("mnist")`), or a data set name or
        checkpoint folder, loaded with `load_generator(generator, precision=...)`.
      rec_iters, rec_rr, rec_lr: the projection's L gradient-descent steps, R random restarts
        and learning rate (the release's 200, 10, 10.0; momentum 0.7).
      seed: int; the restarts of chunk k of a call are drawn with the stateless seed
        [seed, k], so equal inputs give equal outputs.
      precision: "float32" or "bfloat16"; None: the generator's own. A built generator's
        precision is fixed when it is loaded (`load_generator(..., precision=)`).
      batch_size: images per projection call (the projector's fixed batch; 50 as the
        command line's --eval_batch_size). Any number of images is accepted.
      rec_prune_at, rec_keep: the optional early stop of projection.py (0: off, faithful).
    """

    def __init__(self, generator, rec_iters: int = 200, rec_rr: int = 10,
                 rec_lr: float = 10.0, seed: int = 0, precision: str | None = None,
                 batch_size: int = 50, rec_prune_at: float = 0.0, rec_keep: int = 2,
                 checkpoints_dir: str | None = None, name=None):
        super().__init__(name=name)
        self.manifest = None
        if isinstance(generator, str):
            from defense_gan.api import load_generator
            generator = load_generator(generator, precision=precision or "float32",
                                       checkpoints_dir=checkpoints_dir)
        if precision is not None and precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision: must be 'float32' or 'bfloat16', got {precision!r}")
        own = _precision_of(generator)
        # (bfloat16 asked on a CPU without it: the loader chose float32, which is fine.)
        if precision is not None and hardware.resolve_precision(precision, io.StringIO()) != own:
            raise ValueError(f"precision: the generator computes in {own}; load it with "
                             f"load_generator(..., precision={precision!r})")
        self.precision = own
        self.manifest = getattr(generator, "defense_gan_manifest", None)
        self.seed = _check_seed(seed)
        self.generator = generator
        latent_dim = int(getattr(generator, "latent_dim", 0) or generator.input_shape[-1])
        image_shape = tuple(int(d) for d in generator(tf.zeros([1, latent_dim])).shape[1:])
        try:
            settings = projection.ProjectionSettings(
                int(rec_iters), int(rec_rr), float(rec_lr), batch_size=int(batch_size),
                rec_prune_at=float(rec_prune_at), rec_keep=int(rec_keep)).validate()
        except ValueError as err:
            name, rest = str(err).lstrip("-").split(" ", 1)  # "--rec_iters must be ..."
            raise ValueError(f"{name}: {rest}") from None
        self.settings = settings
        self.image_shape = image_shape
        self.latent_dim = latent_dim
        self.projector = projection.Projector(generator, image_shape, latent_dim, settings)
        self.project = tf.function(self._project, input_signature=[
            tf.TensorSpec([None, *image_shape], tf.float32, name="images"),
            tf.TensorSpec([], tf.int32, name="seed")])

    def _project(self, x, seed):
        """x float32 [N, H, W, C] in [0, 1], seed int32 [] -> (x_rec float32 [N, H, W, C],
        mse float32 [N]: per-pixel mean squared error of the chosen restart)."""
        tf.debugging.assert_greater_equal(x, 0.0, message="images: pixel values below 0")
        tf.debugging.assert_less_equal(x, 1.0, message="images: pixel values above 1")
        b = self.settings.batch_size
        n = tf.shape(x)[0]
        chunks = (n + b - 1) // b
        padded = tf.reshape(projection.pad_batch(x, chunks * b), [chunks, b, *self.image_shape])

        def one(args):
            chunk, k = args
            x_rec, _, mse = self.projector(chunk, tf.stack([seed, k]))
            return x_rec, mse

        x_rec, mse = tf.map_fn(one, (padded, tf.range(chunks)), parallel_iterations=1,
                               fn_output_signature=(tf.float32, tf.float32))
        return (tf.reshape(x_rec, [-1, *self.image_shape])[:n], tf.reshape(mse, [-1])[:n])

    def _run(self, x, seed):
        as_numpy = not isinstance(x, (tf.Tensor, tf.Variable))
        x = check_images(x, self.image_shape)
        x_rec, mse = self.project(x, _check_seed(self.seed if seed is None else seed))
        return (x_rec.numpy(), mse.numpy()) if as_numpy else (x_rec, mse)

    def purify(self, x, seed: int | None = None):
        """G(z*) of each image: x float32 [N, H, W, C] in [0, 1] (numpy or tensor, any N) ->
        float32 [N, H, W, C] in [0, 1], numpy for numpy input, else a tf.Tensor. seed: the
        purifier's seed unless given."""
        return self._run(x, seed)[0]

    def reconstruction_error(self, x, seed: int | None = None):
        """Per-image reconstruction MSE ||G(z*) - x||^2 / pixels, float32 [N] (the detection
        statistic of the paper), numpy for numpy input, else a tf.Tensor."""
        return self._run(x, seed)[1]

    def __call__(self, x, seed: int | None = None):
        return self.purify(x, seed)
