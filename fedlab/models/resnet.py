"""ResNet-18 with group normalization, the CIFAR model of Reddi et al. 2020 ("Adaptive Federated
Optimization", Section 5 and Appendix C), after Hsieh et al. 2020 ("The Non-IID Data Quagmire of
Decentralized Machine Learning"), who showed that batch normalization breaks under label-skewed
clients and put group normalization (Wu & He 2018) in its place.

The architecture is TFF 0.87's ``create_resnet18`` (``tensorflow_federated/python/simulation/
models/resnet_models.py``, ``create_resnet`` with basic blocks, repetitions [2, 2, 2, 2]), layer
for layer, written anew here:

- a 7x7 convolution of 64 filters with stride 2, group norm, ReLU, then a 3x3 max-pool with
  stride 2 (``padding='same'`` both), so 32x32 CIFAR images become 8x8;
- four stages of two pre-activation basic blocks (He et al. 2016, "Identity Mappings in Deep
  Residual Networks") with 64, 128, 256 and 512 filters: norm-ReLU-conv3x3 twice (the very first
  block starts with its convolution), plus a shortcut that is the block's input, or a 1x1
  convolution and group norm of it where the number of channels changes. TFF passes no stride to
  the stages, so every stage keeps the 8x8 resolution of the stem;
- group norm, ReLU, global average pooling and a dense layer to the classes.

Convolutions have no bias (as TFF's); the dense layer outputs logits (TFF's has a softmax, which
in fedlab lives in the loss). Group norm has only trainable weights (gamma, beta), which is why
the model can be exchanged with TFF as trainable weights alone and runs on both engines.

Parameters: 11,181,642 for CIFAR-10 (32x32x3, 10 classes) and 11,227,812 for CIFAR-100 (100
classes); ``tests/test_models.py`` checks both counts against TFF's own ``create_resnet18``.

Two deliberate differences from TFF's builder:

- **groups=2.** Reddi et al. use two groups per group-norm layer, as did the research code
  behind their paper (google-research/federated, with TensorFlow Addons' ``GroupNormalization``,
  whose default was then 2 groups). TFF 0.87's builder calls Keras 2.14's
  ``GroupNormalization(axis=-1)``, whose default is 32 groups, so it is not the paper's model in
  this respect. The number of groups changes no parameter count.
- **No L2 weight decay.** TFF's builder adds an L2 regularizer of 1e-4 to every kernel; the
  papers' FedOpt experiments do not state weight decay, and fedlab's loss is the cross-entropy
  alone on both engines (the fast engine refuses a model with regularization losses).

The initializers are TFF's: He-normal convolutions, a N(0, 0.01²) dense kernel.
"""

from __future__ import annotations

from fedlab.models.base import MODELS, Takes, flat_size, takes

GROUPS = 2  # Reddi et al. 2020's two groups per layer; see the module docstring
STAGES = (2, 2, 2, 2)  # ResNet-18: two basic blocks in each of four stages (He et al. 2016)


@MODELS.register("resnet18_gn")
@takes(Takes.image)
def resnet18_gn(
    input_shape: tuple[int, ...], num_classes: int, width: int = 64, groups: int = GROUPS
):
    """ResNet-18-GN; ``width`` is the first stage's filters (64 in the paper), doubled at each
    stage, and ``groups`` the group-norm groups. Tests use a narrow ``width`` to stay fast."""
    import tensorflow as tf

    if len(input_shape) != 3:
        raise ValueError(
            f"model=resnet18_gn needs images (height, width, channels), not {input_shape}"
        )
    if width % groups or width < groups:
        raise ValueError(f"resnet18_gn: width={width} is not a multiple of groups={groups}")
    layers = tf.keras.layers

    def conv(x, filters: int, kernel: int, strides: int = 1, padding: str = "same"):
        return layers.Conv2D(
            filters,
            kernel,
            strides=strides,
            padding=padding,
            use_bias=False,
            kernel_initializer="he_normal",
        )(x)

    def norm_relu(x):
        return layers.Activation("relu")(layers.GroupNormalization(groups, axis=-1)(x))

    def basic_block(x, filters: int, normalize_first: bool):
        y = conv(norm_relu(x) if normalize_first else x, filters, 3)
        y = conv(norm_relu(y), filters, 3)
        shortcut = x
        if x.shape[-1] != filters:
            # TFF's shortcut: a 1x1 convolution and group norm of the block's raw input.
            shortcut = layers.GroupNormalization(groups, axis=-1)(conv(x, filters, 1, 1, "valid"))
        return layers.Add()([shortcut, y])

    inputs = layers.Input(shape=(flat_size(input_shape),), dtype=tf.float32)
    x = layers.Reshape(input_shape)(inputs)
    x = norm_relu(conv(x, width, 7, strides=2))
    x = layers.MaxPool2D(3, strides=2, padding="same")(x)
    filters = width
    for stage, blocks in enumerate(STAGES):
        for block in range(blocks):
            x = basic_block(x, filters, normalize_first=not (stage == 0 and block == 0))
        filters *= 2
    x = layers.GlobalAveragePooling2D()(norm_relu(x))
    logits = layers.Dense(
        num_classes, kernel_initializer=tf.keras.initializers.RandomNormal(stddev=0.01)
    )(x)
    return tf.keras.Model(inputs, logits, name="resnet18_gn")
