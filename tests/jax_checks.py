"""`MetaModel` on Keras' JAX backend: tests that run in a JAX process.

`tests/jax_backend_test.py` runs this file with `KERAS_BACKEND=jax` in its
own pytest process (the suite's process runs TensorFlow; Keras fixes its
backend at import). It is not named `*_test.py`, so the suite does not
collect it directly; under another backend it refuses to run. JAX sees
two host CPU devices here (`XLA_FLAGS`), for the data-parallel checks;
the other checks run on the first.
"""

import os
import tempfile

_DEVICES = "--xla_force_host_platform_device_count=2"
if "xla_force_host_platform_device_count" not in os.environ.get(
    "XLA_FLAGS", ""
):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_DEVICES}"

import jax  # noqa: E402

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


def test_map_vmap_and_groups_of_tasks_give_the_same_step():
    # "grouped": vmap over groups of 3 of the 8 tasks (3, 3, 2), which
    # `parallel_tasks` asks for on JAX.
    logs = {}
    weights = {}
    for execution in ("map", "vectorized", "grouped"):
        keras.utils.set_random_seed(0)
        model = sine_model(
            "maml",
            "agreement",
            task_execution="vectorized"
            if execution == "grouped"
            else execution,
            parallel_tasks=3 if execution == "grouped" else None,
        )
        batch = next(iter(sine_tasks(seed=0)))
        logs[execution] = model.train_on_batch(batch, return_dict=True)
        weights[execution] = model.get_weights()
    for other in ("vectorized", "grouped"):
        for a, b in zip(weights["map"], weights[other]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert logs["map"]["weight_min"] == pytest.approx(
            logs[other]["weight_min"], rel=1e-5
        )


def conv_float64_setup(kind="conv", **kwargs):
    set_float("float64")
    base = backend_worker.base_model(kind)
    model = keras_ga.MetaModel(
        base, algo="maml", inner_steps=2, inner_learning_rate=0.1, **kwargs
    )
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    ep = {k: v[:1] for k, v in backend_worker.episode("conv").items()}
    return model, ep


@pytest.mark.parametrize(
    "kind, kwargs",
    [
        ("conv", {}),
        # ANIL: the logits layer adapts, the body is meta-learned.
        ("conv", {"adapt_layers": ["logits"]}),
        # MAML++'s per-step BatchNorm statistics and weights.
        ("conv_bnwb", {}),
    ],
)
def test_maml_meta_gradient_matches_float64_finite_differences(kind, kwargs):
    # conv + BatchNormalization + max-pooling, two second-order steps.
    model, ep = conv_float64_setup(kind, **kwargs)
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


@pytest.mark.parametrize("algo", ["fomaml", "reptile"])
def test_first_order_rules_match_their_closed_forms(algo):
    # First-order MAML: the query gradient at theta_i; Reptile: theta -
    # theta_i. theta_i by hand: inner SGD with `jax.grad` of the model's
    # stateless loss, every step on the whole support set.
    set_float("float64")
    base = backend_worker.base_model("mlp")
    model = keras_ga.MetaModel(
        base,
        algo=algo,
        inner_steps=3,
        inner_learning_rate=0.1,
        inner_batch_size=backend_worker.SUPPORT,
    )
    model.compile(optimizer="sgd", loss=backend_worker.squared_error)
    ep = backend_worker.episode("mlp")
    results = model.run_tasks(ep, training=True)
    theta, state, _ = jax_trainer.current_values(model)

    def loss(params, x, y):
        outputs, _ = base.stateless_call(params, state, x)
        return jnp.mean(backend_worker.squared_error(y, outputs))

    for task in range(ep["support_x"].shape[0]):
        sx, sy = ep["support_x"][task], ep["support_y"][task]
        phi = list(theta)
        for _ in range(3):
            grads = jax.grad(loss)(phi, sx, sy)
            phi = [p - 0.1 * g for p, g in zip(phi, grads)]
        if algo == "fomaml":
            want = jax.grad(loss)(phi, ep["query_x"][task], ep["query_y"][task])
        else:
            want = [t - p for t, p in zip(theta, phi)]
        for got, expected in zip(results.outer_grads, want):
            np.testing.assert_allclose(
                np.asarray(got[task]), expected, rtol=1e-12, atol=1e-15
            )
        assert max(np.abs(np.asarray(w)).max() for w in want) > 1e-3


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


def anil_bases(functional: bool):
    """An MLP `[3] -> 5 sigmoid -> 4 sigmoid -> [1]`, Sequential (split
    into body and head by ANIL) or the same layers as a functional model
    (not split), with the same weights (sigmoid: Keras' JAX `tanh` rounds
    float64 to float32, see tests/backend_worker.py)."""
    keras.utils.set_random_seed(0)
    layers = [
        keras.layers.Dense(5, activation="sigmoid", name="h1"),
        keras.layers.Dense(4, activation="sigmoid", name="h2"),
        keras.layers.Dense(1, name="out"),
    ]
    inputs = keras.Input((3,))
    if not functional:
        return keras.Sequential([inputs, *layers])
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


def anil_model(functional, **kwargs):
    model = keras_ga.MetaModel(
        anil_bases(functional),
        algo=kwargs.pop("algo", "maml"),
        inner_steps=2,
        inner_learning_rate=0.05,
        adapt_layers=kwargs.pop("adapt_layers", ["out"]),
        weighting="agreement",
        **kwargs,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.1), loss=backend_worker.squared_error
    )
    return model


def linear_tasks(tasks=3, seed=5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(tasks, 12, 3))
    y = x @ rng.normal(size=(3, 1))
    return {
        "support_x": x[:, :6],
        "support_y": y[:, :6],
        "query_x": x[:, 6:],
        "query_y": y[:, 6:],
    }


@pytest.mark.parametrize("algo", ["maml", "fomaml"])
@pytest.mark.parametrize(
    "batch, task_execution", [(None, "map"), (3, "vectorized")]
)
def test_anil_cached_body_gives_the_whole_model_results(
    algo, batch, task_execution
):
    # ANIL on a Sequential model runs its body once per task; on a
    # functional one the whole model at every step: the same results.
    set_float("float64")
    kwargs = dict(
        algo=algo, inner_batch_size=batch, task_execution=task_execution
    )
    split = anil_model(False, **kwargs)
    whole = anil_model(True, **kwargs)
    assert split._partition.reuses_body(batch or 6, 6)
    assert whole._partition.body is None
    ep = linear_tasks()
    a = split.run_tasks(ep, training=True)
    b = whole.run_tasks(ep, training=True)
    for x, y in zip(
        [*a.outer_grads, *a.updates, a.loss, a.predictions],
        [*b.outer_grads, *b.updates, b.loss, b.predictions],
    ):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-14)
    # Only the head adapts; the meta-gradient reaches the body too.
    adapted = set(split._partition.adapted)
    for i, (update, grad) in enumerate(zip(a.updates, a.outer_grads)):
        assert np.abs(np.asarray(grad)).max() > 0.0, i
        if i not in adapted:
            np.testing.assert_array_equal(update, 0.0)


def test_anil_adapt_changes_the_named_layers_only():
    set_float("float64")
    model = anil_model(False, adapt_layers=["h2"])
    ep = linear_tasks(tasks=1)
    x, y = ep["support_x"][0], ep["support_y"][0]
    theta = [np.asarray(v) for v in model.base.trainable_variables]
    fast = model.adapt(x, y, steps=3)
    phi = [np.asarray(v) for v in fast.trainable_variables]
    for i in (0, 1, 4, 5):
        np.testing.assert_array_equal(phi[i], theta[i])
    for i in (2, 3):
        assert np.abs(phi[i] - theta[i]).max() > 1e-4
    predicted = model.adapt_and_predict(x, y, x, steps=3)
    np.testing.assert_allclose(predicted, fast(x), rtol=1e-10)
    before = float(np.mean((np.asarray(model(x)) - y) ** 2))
    after = float(np.mean((np.asarray(predicted) - y) ** 2))
    assert after < before


def test_per_step_batch_norm_updates_the_rows_of_the_steps_taken():
    # Two inner steps of three rows: rows 0 and 1 move (step 1's also in
    # the query pass), row 2 is untouched; TensorFlow's step is the same
    # to float64 precision (tests/backend_worker.py).
    keras.utils.set_random_seed(0)
    base = keras_ga.conv4((8, 8, 1), 3, 4, blocks=2, batch_norm_steps=3)
    model = keras_ga.MetaModel(
        base, algo="fomaml", inner_steps=2, inner_learning_rate=0.1
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    layers = [
        layer
        for layer in base.layers
        if isinstance(layer, keras_ga.batch_norm.BatchNormalization)
    ]
    assert layers and all(layer.steps == 3 for layer in layers)
    before = [np.asarray(layer.moving_mean) for layer in layers]
    rng = np.random.default_rng(0)
    model.train_on_batch(
        {
            "support_x": rng.normal(size=(2, 6, 8, 8, 1)).astype("float32"),
            "support_y": np.tile(np.arange(3), (2, 2)).astype("int32"),
            "query_x": rng.normal(size=(2, 3, 8, 8, 1)).astype("float32"),
            "query_y": np.tile(np.arange(3), (2, 1)).astype("int32"),
        }
    )
    for layer, old in zip(layers, before):
        moved = np.abs(np.asarray(layer.moving_mean) - old).max(axis=1)
        assert moved[0] > 0 and moved[1] > 0, moved
        assert moved[2] == 0, moved


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


def test_tensorflow_is_not_importable_and_was_not_imported():
    # `tests/jax_backend_test.py` loads `tests.without_tensorflow`, so the
    # checks above ran as if TensorFlow were not installed.
    import sys  # noqa: PLC0415

    with pytest.raises(ModuleNotFoundError):
        import tensorflow  # noqa: F401, PLC0415
    assert not [m for m in sys.modules if m.split(".")[0] == "tensorflow"]


def test_few_shot_numpy_episodes_train_a_conv_model():
    # The N-way K-shot sampler's NumPy path (the tf.data path's tasks, see
    # tests/numpy_episodes_test.py) feeds fit and evaluate_tasks on JAX.
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    prototypes = rng.normal(size=(20, 1, 8, 8, 1))
    images = prototypes + 0.3 * rng.normal(size=(20, 10, 8, 8, 1))

    def episodes(seed, num_tasks=None):
        return keras_ga.numpy_episodes.FewShotEpisodes(
            images.astype("float32"),
            ways=5,
            shots=1,
            queries=2,
            meta_batch_size=4,
            seed=seed,
            num_tasks=num_tasks,
        )

    model = keras_ga.MetaModel(
        keras_ga.conv4((8, 8, 1), 5, 8), algo="maml", inner_learning_rate=0.4
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    before = keras_ga.evaluate_tasks(model, episodes(7, 40))
    model.fit(episodes(0), steps_per_epoch=60, epochs=1, verbose=0)
    after = keras_ga.evaluate_tasks(model, episodes(7, 40))
    assert after.num_tasks == 40
    assert after.mean > before.mean + 0.1, (before, after)


def data_parallel_step(kind, distribution):
    """Weights and logs after one float64 MAML step with agreement weights
    on `backend_worker`'s four-task meta-batch, under `distribution`."""
    keras.distribution.set_distribution(distribution)
    try:
        set_float("float64")
        keras.utils.set_random_seed(0)
        model = keras_ga.MetaModel(
            backend_worker.base_model(kind),
            algo="maml",
            weighting="agreement",
            inner_steps=2,
            inner_learning_rate=0.1,
        )
        loss = "mse"
        if kind == "conv":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(optimizer="sgd", loss=loss)
        ep = backend_worker.episode(kind)
        logs = model.train_on_batch(ep, return_dict=True)
        evaluation = keras_ga.evaluate_tasks(
            model, [ep], metric="mse" if kind == "mlp" else "accuracy"
        )
        return model, ep, model.get_weights(), logs, evaluation
    finally:
        keras.distribution.set_distribution(None)


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_data_parallel_over_two_devices_gives_the_one_device_step(kind):
    # Keras' DataParallel splits the meta-batch's task axis over the
    # devices; the jit-compiled step is the same global computation, so
    # the agreement weights' sums over tasks (sum_j g_j and the
    # normaliser), the BatchNorm statistics' mean over tasks and the logs
    # are all-reduced over devices by XLA.
    assert len(jax.devices()) == 2, jax.devices()
    *_, weights, logs, evaluation = data_parallel_step(kind, None)
    model, ep, weights2, logs2, evaluation2 = data_parallel_step(
        kind, keras.distribution.DataParallel()
    )
    for a, b in zip(weights, weights2):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)
    assert logs.keys() == logs2.keys()
    for key in logs:
        assert logs2[key] == pytest.approx(logs[key], rel=1e-12), key
    assert evaluation2.mean == pytest.approx(evaluation.mean, rel=1e-12)
    # It did run on both devices: the variables are replicated over them,
    # and the step compiled for a task-sharded meta-batch all-reduces.
    variable = model.trainable_variables[0].value
    assert len(variable.sharding.device_set) == 2
    distribution = keras.distribution.DataParallel()
    data = {
        k: keras.distribution.distribute_tensor(
            v, distribution.get_data_layout(v.shape)
        )
        for k, v in ep.items()
    }
    assert len(data["support_x"].sharding.device_set) == 2
    state = model._get_jax_state(
        trainable_variables=True,
        non_trainable_variables=True,
        optimizer_variables=True,
        metrics_variables=True,
    )
    with distribution.scope():
        compiled = jax.jit(model.train_step).lower(state, data).compile()
    assert "all-reduce" in compiled.as_text()
