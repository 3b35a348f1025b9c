"""Network architectures, faithful to the authors' release (see ORIGINAL.md).

All models are Keras subclassed models. Images are float32 [N, H, W, C] in the data set's
pixel range (`dataset_spec`): [N, 28, 28, 1] in [0, 1] for MNIST / Fashion-MNIST, [N, 64, 64, 3]
in [-1, 1] for CelebA. `generator(spec)`, `critic(spec)` and `Classifier(num_classes=...)` build
the networks of a data set.
`dtype` is a Keras dtype policy name: "float32" or "mixed_bfloat16" (compute in bfloat16,
variables in float32); outputs are always cast back to float32.

Dropout: the release's TF1 `Dropout(p)` takes the KEEP probability p. Keras' `Dropout(rate)`
takes the DROP probability, so a release `Dropout(0.25)` is `layers.Dropout(0.75)` here.
"""

import keras
import tensorflow as tf
from keras import layers

from defense_gan import dataset_spec

MNIST_SHAPE = dataset_spec.MNIST.image_shape  # (28, 28, 1)


def _policy(precision: str) -> str:
    return "mixed_bfloat16" if precision == "bfloat16" else "float32"


class Generator(keras.Model):
    """z float32 [N, latent_dim] -> image float32 [N, 28, 28, 1] in [0, 1].

    Linear -> 4x4x256, ReLU; ConvT 5x5/2 -> 8x8x128, ReLU; crop to 7x7; ConvT 5x5/2 -> 14x14x64,
    ReLU; ConvT 5x5/2 -> 28x28x1, sigmoid. No batch norm. 1,554,177 parameters.
    """

    def __init__(self, latent_dim: int = 128, dim: int = 64, precision: str = "float32",
                 **kwargs):
        super().__init__(**kwargs)
        policy = _policy(precision)
        self.latent_dim = latent_dim
        self.dim = dim
        self.fc = layers.Dense(4 * 4 * 4 * dim, activation="relu", dtype=policy, name="fc")
        self.reshape = layers.Reshape((4, 4, 4 * dim), dtype=policy)
        self.deconv1 = layers.Conv2DTranspose(2 * dim, 5, strides=2, padding="same",
                                              activation="relu", dtype=policy, name="deconv1")
        self.crop = layers.Cropping2D(((0, 1), (0, 1)), dtype=policy)  # 8x8 -> 7x7, as the release
        self.deconv2 = layers.Conv2DTranspose(dim, 5, strides=2, padding="same",
                                              activation="relu", dtype=policy, name="deconv2")
        self.deconv3 = layers.Conv2DTranspose(1, 5, strides=2, padding="same", dtype=policy,
                                              name="deconv3")

    def call(self, z, training=False):
        h = self.reshape(self.fc(z))
        h = self.deconv2(self.crop(self.deconv1(h)))
        # deconv3 is computed by `subpixel_conv_transpose` (same function, same variables), so
        # its own `call`, which would build it, never runs.
        if not self.deconv3.built:
            self.deconv3.build(h.shape)
        h = subpixel_conv_transpose(self.deconv3, h)
        return tf.sigmoid(tf.cast(h, tf.float32))


# For output phase a (row parity) of a 5x5, stride-2, SAME transposed convolution (padding 1
# before, 2 after), the kernel row that links output row 2i + a to input row i + d.
_PHASE_TAPS = {0: {-1: 3, 0: 1}, 1: {-1: 4, 0: 2, 1: 0}}


def subpixel_conv_transpose(layer: layers.Conv2DTranspose, x: tf.Tensor) -> tf.Tensor:
    """`layer(x)` for a 5x5, stride-2, SAME Conv2DTranspose without activation, computed as one
    3x3 stride-1 convolution with 4 x filters outputs (one per output pixel phase) followed by
    depth_to_space(2). Same result up to float rounding (tested); for the generator's last
    layer (64 -> 1 channel) oneDNN runs this about 2.5x faster than its transposed convolution,
    which is the largest single cost of the projection per FLOP. The other layers are faster
    as transposed convolutions (the phase kernel is 9/6.25 x larger)."""
    k = tf.cast(layer.kernel, x.dtype)  # [5, 5, filters, in]
    zeros = tf.zeros_like(tf.transpose(k[0, 0]))  # [in, filters]
    rows = []
    for dy in (-1, 0, 1):
        row = []
        for dx in (-1, 0, 1):
            phases = []
            for a in (0, 1):
                for b in (0, 1):
                    u, v = _PHASE_TAPS[a].get(dy), _PHASE_TAPS[b].get(dx)
                    phases.append(zeros if u is None or v is None else tf.transpose(k[u, v]))
            row.append(tf.concat(phases, -1))  # depth_to_space order: (a * 2 + b) * filters + c
        rows.append(tf.stack(row))
    y = tf.nn.depth_to_space(tf.nn.conv2d(x, tf.stack(rows), 1, "SAME"), 2)
    return y + tf.cast(layer.bias, x.dtype) if layer.use_bias else y


class CelebAGenerator(keras.Model):
    """z float32 [N, latent_dim] -> image float32 [N, 64, 64, 3] in [-1, 1] (the release's
    `celeba_generator`, NET_DIM 64, no batch norm as default.yml's USE_BN: False).

    Linear -> 4x4x256, ReLU; ConvT 5x5/2 -> 8x8x128, ReLU; ConvT 5x5/2 -> 16x16x64, ReLU;
    ConvT 5x5/2 -> 32x32x64 (no activation: the release has none between its last two
    transposed convolutions); ConvT 5x5/2 -> 64x64x3, tanh. 1,659,843 parameters.
    """

    def __init__(self, latent_dim: int = 128, dim: int = 64, precision: str = "float32",
                 **kwargs):
        super().__init__(**kwargs)
        policy = _policy(precision)
        self.latent_dim = latent_dim
        self.dim = dim
        deconv = lambda filters, i, act=None: layers.Conv2DTranspose(  # noqa: E731
            filters, 5, strides=2, padding="same", activation=act, dtype=policy,
            name=f"deconv{i}")
        self.fc = layers.Dense(4 * 4 * 4 * dim, activation="relu", dtype=policy, name="fc")
        self.reshape = layers.Reshape((4, 4, 4 * dim), dtype=policy)
        self.deconv1 = deconv(2 * dim, 1, "relu")
        self.deconv2 = deconv(dim, 2, "relu")
        self.deconv3 = deconv(dim, 3)
        self.deconv4 = deconv(3, 4)

    def call(self, z, training=False):
        h = self.deconv3(self.deconv2(self.deconv1(self.reshape(self.fc(z)))))
        if not self.deconv4.built:  # computed by subpixel_conv_transpose, as in Generator
            self.deconv4.build(h.shape)
        return tf.tanh(tf.cast(subpixel_conv_transpose(self.deconv4, h), tf.float32))


class Critic(keras.Model):
    """image float32 [N, H, W, C] -> score float32 [N] (unbounded, WGAN critic).

    Conv 5x5/2 SAME 64, 128, 256 with LeakyReLU 0.2; flatten; Linear -> 1. On 28x28x1 (MNIST)
    the flatten has 4096 features, 1,030,145 parameters; on 64x64x3 (CelebA) 16384 features,
    1,045,633 parameters. (The release's CelebA critic reshapes its 8x8x256 map to rows of
    4096, i.e. scores four 2-row bands of each image with one shared Linear and averages them
    in the loss, a leftover of the MNIST code; here the Linear sees the whole map.)
    """

    def __init__(self, dim: int = 64, precision: str = "float32", **kwargs):
        super().__init__(**kwargs)
        policy = _policy(precision)
        # Named attributes, not a list: Keras 3 hides list attributes from tf.train.Checkpoint
        # (see the classifiers). Checkpoints written before this change held these weights only
        # under the critic's optimizer; they still restore (tests/test_training.py).
        conv = lambda i, m: layers.Conv2D(dim * m, 5, strides=2, padding="same",  # noqa: E731
                                          dtype=policy, name=f"conv{i}")
        self.conv1, self.conv2, self.conv3 = conv(1, 1), conv(2, 2), conv(3, 4)
        self.act = layers.LeakyReLU(0.2, dtype=policy)
        self.flatten = layers.Flatten(dtype=policy)
        self.out = layers.Dense(1, dtype=policy, name="out")

    def call(self, x, training=False):
        h = x
        for conv in (self.conv1, self.conv2, self.conv3):
            h = self.act(conv(h))
        return tf.cast(self.out(self.flatten(h))[:, 0], tf.float32)


def _keep(p: float, policy: str) -> layers.Dropout:
    """The release's Dropout(keep_prob) as a Keras layer (rate = 1 - keep_prob)."""
    return layers.Dropout(1.0 - p, dtype=policy)


def classifier_layers(model: str, policy: str = "float32", num_classes: int = 10) -> list:
    """The layer stack of classifier `model` (A-F) up to the logits [N, num_classes]."""
    conv = lambda f, k, s, pad: layers.Conv2D(f, k, strides=s, padding=pad,  # noqa: E731
                                              activation="relu", dtype=policy)
    dense = lambda n, act="relu": layers.Dense(n, activation=act, dtype=policy)  # noqa: E731
    flat = lambda: layers.Flatten(dtype=policy)  # noqa: E731
    logits = lambda: layers.Dense(num_classes, dtype=policy, name="logits")  # noqa: E731
    if model == "A":
        return [conv(64, 5, 1, "same"), conv(64, 5, 2, "valid"), flat(), _keep(0.25, policy),
                dense(128), _keep(0.5, policy), logits()]
    if model in ("B", "F"):
        stack = [conv(64, 8, 2, "same"), conv(128, 6, 2, "valid"), conv(128, 5, 1, "valid"),
                 flat()]
        if model == "B":
            stack = [_keep(0.2, policy)] + stack + [_keep(0.5, policy)]
        return stack + [logits()]
    if model == "C":
        return [conv(128, 3, 1, "same"), conv(64, 5, 2, "valid"), flat(), _keep(0.25, policy),
                dense(128), _keep(0.5, policy), logits()]
    if model == "D":
        return [flat(), dense(200), _keep(0.5, policy), dense(200), logits()]
    if model == "E":
        return [flat(), dense(200), dense(200), logits()]
    raise ValueError(f"unknown classifier model '{model}' (expected one of A-F)")


class Classifier(keras.Model):
    """image float32 [N, H, W, C] in the data set's pixel range -> logits float32
    [N, num_classes] (10 for MNIST / Fashion-MNIST, 2 for CelebA: the release builds the same
    A-F on 64x64x3 inputs with nb_classes 2).

    The release's classifiers end in a softmax; we return logits and apply the softmax where
    probabilities are needed (`predict_proba`), so attack losses are computed stably on logits
    (as CleverHans v2 did by reading the softmax's input).
    """

    def __init__(self, model: str = "F", precision: str = "float32", num_classes: int = 10,
                 **kwargs):
        super().__init__(**kwargs)
        self.model_name = model
        self.stack = classifier_layers(model, _policy(precision), num_classes)
        # Keras 3 hides a list attribute from tf.train.Checkpoint: without a named attribute
        # per layer an export of the classifier alone would hold no weights at all.
        for i, layer in enumerate(self.stack):
            setattr(self, f"layer{i}", layer)

    def call(self, x, training=False):
        h = x
        for layer in self.stack:
            h = layer(h, training=training) if isinstance(layer, layers.Dropout) else layer(h)
        return tf.cast(h, tf.float32)

    def predict_proba(self, x):
        return tf.nn.softmax(self(x, training=False))


# The generator class of each `DatasetSpec.generator_architecture` (the name in manifests).
GENERATORS = {"release_mnist_generator": Generator, "release_celeba_generator": CelebAGenerator}


def generator(spec: dataset_spec.DatasetSpec, latent_dim: int = 128,
              precision: str = "float32") -> keras.Model:
    """The release's generator for data set `spec`, built (variables exist)."""
    return build(GENERATORS[spec.generator_architecture](latent_dim, precision=precision),
                 (latent_dim,))


def critic(spec: dataset_spec.DatasetSpec, precision: str = "float32") -> keras.Model:
    """The release's critic for images of data set `spec`, built."""
    return build(Critic(precision=precision), spec.image_shape)


def classifier(spec: dataset_spec.DatasetSpec, model: str,
               precision: str = "float32") -> keras.Model:
    """Classifier `model` (A-F) for data set `spec` (its image shape and classes), built."""
    return build(Classifier(model, precision=precision, num_classes=spec.num_classes),
                 spec.image_shape)


def build(model: keras.Model, input_shape) -> keras.Model:
    """Create the variables of `model` by calling it once on zeros."""
    model(tf.zeros((1, *input_shape)))
    return model


class MagNetAutoEncoder(keras.Model):
    """One of MagNet's MNIST denoising auto-encoders (Meng and Chen 2017, as their released
    code builds them): every convolution 3x3, SAME, sigmoid.

    structure "I" (detector I and the reformer): Conv 3, AvgPool 2x2, Conv 3 | Conv 3,
      UpSample 2x2, Conv 3, Conv C.
    structure "II" (detector II): Conv 3 | Conv 3, Conv C.
    image float32 [N, H, W, C] in [0, 1] (H, W even for "I") -> same shape in [0, 1].
    MagNet's L2 activity regulariser (strength 1e-9) is left out: it changes nothing
    measurable at that strength.
    """

    def __init__(self, structure: str = "I", channels: int = 1, **kwargs):
        super().__init__(**kwargs)
        if structure not in ("I", "II"):
            raise ValueError(f"unknown MagNet auto-encoder structure '{structure}'")
        self.structure = structure
        conv = lambda f, name: layers.Conv2D(f, 3, padding="same",  # noqa: E731
                                             activation="sigmoid", name=name)
        self.enc1 = conv(3, "enc1")
        self.dec_out = conv(channels, "dec_out")
        self.dec1 = conv(3, "dec1")
        if structure == "I":
            self.pool = layers.AveragePooling2D(2, padding="same")
            self.enc2 = conv(3, "enc2")
            self.up = layers.UpSampling2D(2)
            self.dec2 = conv(3, "dec2")

    def call(self, x, training=False):
        if self.structure == "I":
            h = self.enc2(self.pool(self.enc1(x)))
            h = self.dec2(self.up(self.dec1(h)))
        else:
            h = self.dec1(self.enc1(x))
        return self.dec_out(h)


class MagNet(keras.Model):
    """MagNet's MNIST defense networks: `ae_i` (structure I: detector I with the L2 error, and
    the reformer) and `ae_ii` (structure II: detector II with the L1 error). Calling it
    returns (ae_i(x), ae_ii(x))."""

    def __init__(self, channels: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.ae_i = MagNetAutoEncoder("I", channels, name="ae_i")
        self.ae_ii = MagNetAutoEncoder("II", channels, name="ae_ii")

    def call(self, x, training=False):
        return self.ae_i(x), self.ae_ii(x)
