"""`MetaModel` on Keras' JAX backend: tests that run in a JAX process.

`tests/jax_backend_test.py` runs this file with `KERAS_BACKEND=jax` in its
own pytest process (the suite's process runs TensorFlow; Keras fixes its
backend at import). It is not named `*_test.py`, so the suite does not
collect it directly; under another backend it refuses to run.
"""

import os
import tempfile

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_ga  # noqa: E402
from keras_ga import jax_trainer  # noqa: E402
from tests import backend_worker  # noqa: E402

if keras.backend.backend() != "jax":
    raise RuntimeError(
        "tests/jax_checks.py runs under KERAS_BACKEND=jax (see "
        "tests/jax_backend_test.py). Received: backend="
        f"{keras.backend.backend()!r}"
    )

ALGOS = ("maml", "fomaml", "reptile")


def set_float(dtype: str) -> None:
    # The dtype policy is made from floatx once, then kept: set both.
    keras.config.set_floatx(dtype)
    keras.mixed_precision.set_global_policy(dtype)


@pytest.fixture(autouse=True)
def float32():
    set_float("float32")
    yield
    set_float("float32")


def sine_model(algo, weighting, **kwargs):
    # Reptile moves theta towards theta_i: more inner steps, and the outer
    # SGD step as its meta-step size.
    reptile = algo == "reptile"
    model = keras_ga.MetaModel(
        keras_ga.mlp((1,), 1, (40, 40)),
        algo=algo,
        weighting=weighting,
        inner_steps=5 if reptile else 2,
        inner_learning_rate=0.02,
        **kwargs,
    )
    outer = (
        keras.optimizers.SGD(1.0) if reptile else keras.optimizers.Adam(3e-3)
    )
    model.compile(optimizer=outer, loss="mse")
    return model


def sine_tasks(seed, batches=None):
    return keras_ga.datasets.sine_tasks(
        shots=10,
        queries=10,
        meta_batch_size=8,
        seed=seed,
        num_tasks=None if batches is None else 8 * batches,
        pipeline="numpy",
    )


@pytest.mark.parametrize("weighting", ["uniform", "agreement"])
@pytest.mark.parametrize("algo", ALGOS)
def test_fit_lowers_the_adapted_loss_on_held_out_tasks(algo, weighting):
    keras.utils.set_random_seed(0)
    model = sine_model(algo, weighting)
    held_out = sine_tasks(seed=99, batches=4)
    before = model.evaluate(held_out, return_dict=True, verbose=0)["loss"]
    model.fit(sine_tasks(seed=0), steps_per_epoch=500, epochs=1, verbose=0)
    after = model.evaluate(held_out, return_dict=True, verbose=0)["loss"]
    assert np.isfinite(after)
    assert after < before, (before, after)
    if (algo, weighting) != ("reptile", "agreement"):
        assert after < 0.7 * before, (before, after)
    # Reptile with agreement weights barely moves on sine tasks, on
    # TensorFlow as here (3.30 -> 3.28 against 3.30 -> 1.55 uniform, same
    # settings): the tasks' updates theta - theta_i disagree, many weights
    # are negative and sum_i w_i g_i nearly cancels.


def test_map_and_vmap_give_the_same_step():
    logs = {}
    weights = {}
    for execution in ("map", "vectorized"):
        keras.utils.set_random_seed(0)
        model = sine_model("maml", "agreement", task_execution=execution)
        batch = next(iter(sine_tasks(seed=0)))
        logs[execution] = model.train_on_batch(batch, return_dict=True)
        weights[execution] = model.get_weights()
    for a, b in zip(weights["map"], weights["vectorized"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert logs["map"]["weight_min"] == pytest.approx(
        logs["vectorized"]["weight_min"], rel=1e-5
    )


def conv_float64_setup():
    set_float("float64")
    base = backend_worker.base_model("conv")
    model = keras_ga.MetaModel(
        base, algo="maml", inner_steps=2, inner_learning_rate=0.1
    )
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    ep = {k: v[:1] for k, v in backend_worker.episode("conv").items()}
    return model, ep


def test_maml_meta_gradient_matches_float64_finite_differences():
    # conv + BatchNormalization + max-pooling, two second-order steps.
    model, ep = conv_float64_setup()
    theta, state, _ = jax_trainer.current_values(model)
    assert theta[0].dtype == "float64"
    results = jax_trainer.run_tasks(
        model,
        theta,
        state,
        ep,
        training=True,
        steps=2,
        protocol=None,
        key=jax.random.key(0),
    )
    grads = [np.asarray(g[0]) for g in results.outer_grads]

    def loss_at(values):
        out = jax_trainer.run_tasks(
            model,
            [jnp.asarray(v) for v in values],
            state,
            ep,
            training=False,
            steps=2,
            protocol="transductive",
            key=jax.random.key(0),
        )
        return float(out.loss[0])

    # Evaluation adapts first order, so compare with second-order values
    # through a MAML rule's loss: the query loss after adaptation is the
    # same function of theta either way.
    rng = np.random.default_rng(1)
    values = [np.asarray(t) for t in theta]
    for _ in range(3):
        d = [rng.normal(size=t.shape) for t in values]
        h = 1e-6
        fd = (
            loss_at([t + h * u for t, u in zip(values, d)])
            - loss_at([t - h * u for t, u in zip(values, d)])
        ) / (2 * h)
        analytic = sum(np.sum(g * u) for g, u in zip(grads, d))
        assert abs(analytic - fd) / abs(fd) < 1e-6, (analytic, fd)


def test_fomaml_is_not_maml():
    # The first-order rule must differ from the second-order one here
    # (else the finite-difference test above could not tell them apart).
    model, ep = conv_float64_setup()
    theta, state, _ = jax_trainer.current_values(model)
    grads = {}
    for algo in ("maml", "fomaml"):
        model.algo = algo
        out = jax_trainer.run_tasks(
            model, theta, state, ep, True, 2, None, jax.random.key(0)
        )
        grads[algo] = np.concatenate([np.ravel(g) for g in out.outer_grads])
    assert np.max(np.abs(grads["maml"] - grads["fomaml"])) > 1e-4


@pytest.mark.parametrize(
    "argument, value",
    [
        ("adapt_layers", ["dense_1"]),
        ("multi_step_loss", True),
        ("weight_diagnostics", "update_norm"),
        ("parallel_tasks", 2),
        ("inner_optimizer", keras_ga.inner_optimizers.Adam(moments="carry")),
    ],
)
def test_unsupported_options_are_refused_by_name(argument, value):
    base = keras_ga.mlp((1,), 1, (8,))
    layer_names = [layer.name for layer in base.layers]
    if argument == "adapt_layers":
        value = layer_names[-1:]
    with pytest.raises(ValueError, match=f"`{argument}` is not supported"):
        keras_ga.MetaModel(base, algo="fomaml", **{argument: value})


def test_save_and_load_keep_weights_and_evaluation():
    keras.utils.set_random_seed(0)
    model = sine_model("fomaml", "agreement")
    model.fit(sine_tasks(seed=0), steps_per_epoch=5, epochs=1, verbose=0)
    held_out = list(sine_tasks(seed=5, batches=2))
    before = model.evaluate(held_out[0], return_dict=True, verbose=0)
    path = os.path.join(tempfile.mkdtemp(), "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, keras_ga.MetaModel)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    after = loaded.evaluate(held_out[0], return_dict=True, verbose=0)
    assert after["loss"] == pytest.approx(before["loss"], rel=1e-6)


def test_labels_outside_the_outputs_raise():
    model = keras_ga.MetaModel(keras_ga.mlp((2,), 3, (8,)), algo="fomaml")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = np.zeros((2, 3, 2), "float32")
    y = np.array([[0, 1, 5], [0, 1, 2]], "int32")
    with pytest.raises(ValueError, match="must be class indices in"):
        model.train_on_batch((x, y, x, y))


def test_adapt_and_adapt_and_predict_agree_and_fit_the_task():
    keras.utils.set_random_seed(0)
    model = sine_model("maml", "uniform")
    x = np.linspace(-5, 5, 10, dtype="float32")[:, None]
    y = np.sin(x)
    fast = model.adapt(x, y, steps=5)
    predicted = model.adapt_and_predict(x, y, x, steps=5)
    np.testing.assert_allclose(fast(x), predicted, rtol=1e-5, atol=1e-6)
    before = float(np.mean((np.asarray(model(x)) - y) ** 2))
    after = float(np.mean((np.asarray(predicted) - y) ** 2))
    assert after < before


def test_evaluate_tasks_gives_a_confidence_interval():
    keras.utils.set_random_seed(0)
    model = sine_model("fomaml", "uniform")
    result = keras_ga.evaluate_tasks(
        model, sine_tasks(seed=3, batches=3), metric="mse"
    )
    assert result.num_tasks == 24
    assert np.isfinite(result.mean) and result.ci95 > 0


def test_auto_execution_is_map_for_convolutions_and_vmap_otherwise():
    conv = keras_ga.MetaModel(keras_ga.conv4((28, 28, 1), 5, 8), algo="fomaml")
    mlp = keras_ga.MetaModel(keras_ga.mlp((1,), 1, (8,)), algo="fomaml")
    assert conv.resolved_task_execution == "map"
    assert mlp.resolved_task_execution == "vectorized"
    vmapped = keras_ga.MetaModel(
        keras_ga.conv4((28, 28, 1), 5, 8),
        algo="fomaml",
        task_execution="vectorized",  # allowed on JAX, unlike TensorFlow
    )
    assert vmapped.resolved_task_execution == "vectorized"


def test_learned_inner_rates_train_and_are_used_by_adapt():
    keras.utils.set_random_seed(0)
    model = sine_model("maml", "uniform", learn_inner_rates="per_parameter")
    initial = [np.asarray(r) for r in model.inner_rates]
    model.fit(sine_tasks(seed=0), steps_per_epoch=20, epochs=1, verbose=0)
    trained = [np.asarray(r) for r in model.inner_rates]
    assert any(np.max(np.abs(a - b)) > 1e-4 for a, b in zip(initial, trained))
    x = np.linspace(-5, 5, 10, dtype="float32")[:, None]
    y = np.sin(x)
    adapted = model.adapt_and_predict(x, y, x, steps=2)
    for rate in model.inner_rates:
        rate.assign(np.zeros(rate.shape, rate.dtype))
    unadapted = model.adapt_and_predict(x, y, x, steps=2)
    np.testing.assert_allclose(unadapted, model(x), rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(np.asarray(adapted) - np.asarray(unadapted))) > 1e-4
