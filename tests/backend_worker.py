"""One meta-step of several `MetaModel`s, on the backend of `KERAS_BACKEND`.

`python -m tests.backend_worker OUT` runs every case of `CASES` in float64
from the same weights and meta-batch (NumPy seeds), and writes
`OUT/<case>.npz`: the weights (and non-trainable variables: BatchNorm
statistics, carried inner Adam moments) after one `train_on_batch` (two
for carried moments) with outer SGD,
the step's logs (`train_*`) and the logs of a `test_on_batch` after it
(`test_*`). `tests/jax_backend_test.py` runs it under TensorFlow and
under JAX and compares.

Keras 3.15 computes some float64 ops in float32 on JAX (its type promotion
maps 64-bit results to 32-bit: `keras.ops.mean`, hence the stock mean
squared error and BatchNormalization, and `tanh`; see benchmarks/
RESULTS.md, "Keras' JAX backend"). The cases use what is exact there: a
sigmoid MLP with `squared_error` below, and a convolutional network with
keras_ga's BatchNormalization and cross-entropy from logits.
"""

import os
import sys

import numpy as np

# name: (model, algo, weighting, inner optimizer, evaluation protocol[,
# other MetaModel arguments])
CASES = {
    "mlp_maml_uniform": ("mlp", "maml", "uniform", "sgd", "transductive"),
    "mlp_maml_agreement": ("mlp", "maml", "agreement", "sgd", "transductive"),
    "mlp_fomaml_agreement": (
        "mlp",
        "fomaml",
        "agreement",
        "sgd",
        "transductive",
    ),
    "mlp_reptile_agreement": (
        "mlp",
        "reptile",
        "agreement",
        "sgd",
        "transductive",
        {"weight_diagnostics": "update_norm"},
    ),
    "mlp_maml_adam": ("mlp", "maml", "agreement", "adam", "transductive"),
    "conv_maml_agreement": (
        "conv",
        "maml",
        "agreement",
        "sgd",
        "support_plus_query",
    ),
    "conv_fomaml_uniform": ("conv", "fomaml", "uniform", "sgd", "transductive"),
    "mlp_maml_meta_sgd": (
        "mlp",
        "maml",
        "agreement",
        "sgd",
        "transductive",
        {"learn_inner_rates": "per_parameter"},
    ),
    "conv_fomaml_lslr": (
        "conv",
        "fomaml",
        "agreement",
        "sgd",
        "transductive",
        {"learn_inner_rates": "per_layer_per_step"},
    ),
    "conv_reptile_agreement": (
        "conv",
        "reptile",
        "agreement",
        "sgd",
        "transductive",
    ),
    # Inner Adam whose moments carry across meta-steps (the Reptile
    # reference's): two training steps, the second starting from the
    # moments the first stored; second-order MAML through them too.
    "conv_reptile_adam_carry": (
        "conv",
        "reptile",
        "uniform",
        "adam_carry",
        "transductive",
    ),
    # MAML++'s multi-step loss, second-order MAML and first-order MAML
    # (importance weights set to a non-uniform vector before the step).
    "mlp_maml_multi_step": (
        "mlp",
        "maml",
        "agreement",
        "sgd",
        "transductive",
        {"multi_step_loss": True},
    ),
    "conv_fomaml_multi_step": (
        "conv",
        "fomaml",
        "uniform",
        "sgd",
        "transductive",
        {"multi_step_loss": True},
    ),
    "mlp_maml_adam_carry": (
        "mlp",
        "maml",
        "agreement",
        "adam_carry",
        "transductive",
    ),
    # ANIL: the head alone adapts. Conv: the body (conv + BatchNorm) runs
    # once on the support set; MLP, adapting its first layer: the whole
    # model at every step; with learned rates and carried Adam moments
    # over the adapted weights only.
    "conv_maml_anil": (
        "conv",
        "maml",
        "agreement",
        "sgd",
        "transductive",
        {"adapt_layers": ["logits"]},
    ),
    "mlp_maml_anil_first_layer": (
        "mlp",
        "maml",
        "agreement",
        "sgd",
        "transductive",
        {"adapt_layers": ["hidden"]},
    ),
    "conv_fomaml_anil_lslr": (
        "conv",
        "fomaml",
        "uniform",
        "sgd",
        "transductive",
        {"adapt_layers": ["logits"], "learn_inner_rates": "per_layer_per_step"},
    ),
    "mlp_maml_anil_adam_carry": (
        "mlp",
        "maml",
        "uniform",
        "adam_carry",
        "transductive",
        {"adapt_layers": ["output"]},
    ),
    # MAML++'s per-step BatchNorm: per-step statistics and weights (BNRS
    # + BNWB) with second-order MAML, the multi-step loss and the
    # pre-adaptation pass (rows of step 0); per-step statistics alone with
    # first-order MAML, evaluated support + one query example.
    "conv_bnwb_maml_multi_step": (
        "conv_bnwb",
        "maml",
        "agreement",
        "sgd",
        "transductive",
        {"multi_step_loss": True, "pre_adaptation_metrics": True},
    ),
    "conv_bnrs_fomaml": (
        "conv_bnrs",
        "fomaml",
        "uniform",
        "sgd",
        "support_plus_query",
    ),
}
TASKS, SUPPORT, QUERY, WAYS = 4, 6, 6, 3


def base_model(kind: str):
    import keras

    import keras_ga

    if kind == "mlp":
        layers = [
            keras.Input((2,)),
            keras.layers.Dense(8, activation="sigmoid", name="hidden"),
            keras.layers.Dense(1, name="output"),
        ]
    else:
        if kind == "conv":
            norm = keras.layers.BatchNormalization(momentum=0.5)
        else:  # per-step rows for the 3 evaluation steps
            norm = keras_ga.batch_norm.BatchNormalization(
                momentum=0.5, steps=3, per_step_weights=kind == "conv_bnwb"
            )
        layers = [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, padding="same"),
            norm,
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(WAYS, name="logits"),
        ]
    model = keras.Sequential(layers)
    rng = np.random.default_rng(0)
    model.set_weights(
        [
            rng.normal(scale=0.5, size=w.shape)
            if "moving_variance" not in v.path
            else np.abs(rng.normal(size=w.shape)) + 0.5
            for w, v in zip(model.get_weights(), model.weights)
        ]
    )
    return model


def episode(kind: str) -> dict:
    rng = np.random.default_rng(1)
    if kind == "mlp":
        x = rng.uniform(-2, 2, size=(TASKS, SUPPORT + QUERY, 2))
        a = rng.uniform(0.5, 2, size=(TASKS, 1, 1))
        y = a * np.sin(x[..., :1] + x[..., 1:])
    else:
        x = rng.normal(size=(TASKS, SUPPORT + QUERY, 8, 8, 1))
        y = np.tile(np.arange(WAYS), (TASKS, (SUPPORT + QUERY) // WAYS))
        y = y.astype("int32")
    return {
        "support_x": x[:, :SUPPORT],
        "support_y": y[:, :SUPPORT],
        "query_x": x[:, SUPPORT:],
        "query_y": y[:, SUPPORT:],
    }


def squared_error(y_true, y_pred):
    """The mean squared error over the last axis, exact in float64 on JAX."""
    from keras import ops

    return ops.sum(ops.square(y_true - y_pred), axis=-1) / y_pred.shape[-1]


def run(case: str) -> dict:
    import keras

    import keras_ga

    kind, algo, weighting, inner, protocol, *other = CASES[case]
    steps = 1
    if inner == "adam_carry":
        # epsilon 1e-4, not 1e-8: the conv bias before BatchNorm has a zero
        # gradient up to round-off (1e-16), which Adam divides by
        # sqrt(v) + epsilon; with 1e-8 that round-off becomes steps of
        # about 1e-10 that differ between the backends by 1e-12.
        inner = keras_ga.inner_optimizers.Adam(
            beta_1=0.0, epsilon=1e-4, moments="carry"
        )
        steps = 2
    model = keras_ga.MetaModel(
        base_model(kind),
        algo=algo,
        weighting=weighting,
        inner_steps=2,
        eval_inner_steps=3,
        inner_learning_rate=0.1 if inner == "sgd" else 0.01,
        inner_optimizer=inner,
        # Every step on the whole support set: sub-batch orders are each
        # backend's own random draws.
        inner_batch_size=SUPPORT,
        eval_protocol=protocol,
        **(other[0] if other else {}),
    )
    if kind == "mlp":
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=squared_error)
    else:
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    if model.multi_step_loss:
        model.step_loss_weights.assign(np.array([0.3, 0.7]))
    data = episode(kind)
    for _ in range(steps):
        train = model.train_on_batch(data, return_dict=True)
    test = model.test_on_batch(data, return_dict=True)
    out = {f"w{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    out.update({f"train_{k}": np.asarray(v) for k, v in train.items()})
    out.update({f"test_{k}": np.asarray(v) for k, v in test.items()})
    return out


def main(out_dir: str) -> None:
    if os.environ.get("KERAS_BACKEND") == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
    import keras

    keras.config.set_floatx("float64")
    for case in CASES:
        np.savez(os.path.join(out_dir, f"{case}.npz"), **run(case))


if __name__ == "__main__":
    main(sys.argv[1])
