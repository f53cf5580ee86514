"""Are Keras' layers' MAML meta-gradients exact on the JAX backend?

Before keras_ga runs on JAX (its `MetaModel` needs TensorFlow today), this
measures what the JAX backend gives a second-order meta-gradient through
Keras' own layers: for a small conv net with and without
`BatchNormalization` (training mode, batch statistics) and
`MaxPooling2D`, the two-step MAML meta-gradient from `jax.grad` against
float64 central differences of the meta-loss (at several steps,
`--fd_steps`), along random directions (the same for every step and row).
It first reports how far some Keras ops' outputs on float64 inputs are
from NumPy's: on JAX, Keras 3's type promotion maps 64-bit results to
32-bit (`keras.backend.result_type('float64', 'float32')` is `'float32'`
there), so `keras.ops.tanh` and `BatchNormalization` compute in float32,
which a float64 check cannot tell from a wrong derivative. The net uses a
smooth `tanh` (in float64, through `jax.numpy`), and the rows compare
Keras' `BatchNormalization` with the same normalization built from
`keras.ops.moments` and `keras.ops.batch_normalization`, which keep
float64.

Needs JAX (not a keras_ga dependency yet):

    KERAS_BACKEND=jax python -m benchmarks.jax_meta_gradients
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

_STEPS = flags.DEFINE_list(
    "fd_steps",
    ["1e-4", "1e-5", "1e-6"],
    "Central-difference steps, one column each: an exact derivative's "
    "error falls with the step (truncation ~step**2) until float64 "
    "rounding (~1e-16 / step) takes over.",
)
DIRECTIONS = 5


class Float64BatchNorm(keras.layers.Layer):
    """Training-mode batch normalization computed in the input's dtype."""

    def build(self, shape):
        self.gamma = self.add_weight(shape=shape[-1:], initializer="ones")
        self.beta = self.add_weight(shape=shape[-1:], initializer="zeros")

    def call(self, x):
        mean, variance = keras.ops.moments(x, axes=[0, 1, 2])
        return keras.ops.batch_normalization(
            x, mean, variance, -1, self.beta, self.gamma, 1e-3
        )


class Float64Tanh(keras.layers.Layer):
    """`tanh` in the input's dtype (`keras.ops.tanh` computes in float32)."""

    def call(self, x):
        return jax.numpy.tanh(x)


def conv_net(norm, pool):
    layers = [keras.Input((8, 8, 1)), keras.layers.Conv2D(3, 3, padding="same")]
    if norm == "keras":
        layers.append(keras.layers.BatchNormalization())
    elif norm == "float64":
        layers.append(Float64BatchNorm())
    layers.append(Float64Tanh())  # Smooth: no kinks for the differences.
    if pool:
        layers.append(keras.layers.MaxPooling2D(2))
    layers += [keras.layers.Flatten(), keras.layers.Dense(3)]
    return keras.Sequential(layers)


def float64_errors(rng):
    """Max |Keras op(x) - NumPy float64| of the ops that round to float32."""
    x = rng.normal(size=(6, 8, 8, 3)) * 2 + 1
    layer = keras.layers.BatchNormalization()
    out = np.asarray(layer(x, training=True))
    reference = (x - x.mean((0, 1, 2))) / np.sqrt(x.var((0, 1, 2)) + 1e-3)
    return {
        "BatchNormalization(training=True)": np.abs(out - reference).max(),
        "ops.tanh": np.abs(np.asarray(keras.ops.tanh(x)) - np.tanh(x)).max(),
        "ops.relu": np.abs(
            np.asarray(keras.ops.relu(x)) - np.maximum(x, 0)
        ).max(),
    }


def meta_gradient_error(norm, pool, rng, eps):
    model = conv_net(norm, pool)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    support_x, query_x = rng.normal(size=(2, 6, 8, 8, 1))
    support_y, query_y = rng.integers(0, 3, size=(2, 6))
    trainable = [v.value for v in model.trainable_variables]
    state = [v.value for v in model.non_trainable_variables]

    def loss(params, x, y):
        out, _ = model.stateless_call(params, state, x, training=True)
        return loss_fn(y, out)

    def meta_loss(params, steps=2, rate=0.3):
        for _ in range(steps):
            grads = jax.grad(loss)(params, support_x, support_y)
            params = [p - rate * g for p, g in zip(params, grads)]
        return loss(params, query_x, query_y)

    grads = jax.grad(meta_loss)(trainable)
    worst = 0.0
    for _ in range(DIRECTIONS):
        d = [rng.normal(size=p.shape) for p in trainable]
        plus = meta_loss([p + eps * di for p, di in zip(trainable, d)])
        minus = meta_loss([p - eps * di for p, di in zip(trainable, d)])
        numeric = float(plus - minus) / (2 * eps)
        analytic = sum(float(np.sum(g * di)) for g, di in zip(grads, d))
        worst = max(worst, abs(numeric - analytic) / abs(numeric))
    return worst


def main(argv):
    del argv
    keras.config.set_floatx("float64")
    rng = np.random.default_rng(0)
    print(f"keras {keras.__version__}, jax {jax.__version__}, float64")
    print(
        "keras.backend.result_type('float64', 'float32') = "
        f"{keras.backend.result_type('float64', 'float32')!r}"
    )
    for name, error in float64_errors(rng).items():
        print(
            f"keras {name} on float64 input vs NumPy: max abs error {error:.1e}"
        )
    steps = [float(step) for step in _STEPS.value]
    print(
        "| normalization | max-pool | "
        + " | ".join(f"relative error, step {step:g}" for step in steps)
        + " |"
    )
    print("|---|---|" + "---|" * len(steps))
    for norm in ("none", "keras", "float64"):
        for pool in (False, True):
            errors = [
                meta_gradient_error(norm, pool, np.random.default_rng(1), eps)
                for eps in steps
            ]
            cells = " | ".join(f"{error:.1e}" for error in errors)
            print(f"| {norm} | {pool} | {cells} |")


if __name__ == "__main__":
    app.run(main)
