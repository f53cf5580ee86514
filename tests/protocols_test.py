"""Tests of the evaluation protocols: what each query batch normalises over."""

import keras
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga
from keras_ga import protocols

S, Q = 4, 3
BN_EPS = 1e-3
MOVING_MEAN, MOVING_VAR = 0.5, 4.0


def normaliser(execution="auto"):
    """x -> k x -> BatchNorm without scale or offset: reveals the batch."""
    model = keras.Sequential(
        [
            keras.Input((1,), dtype="float64"),
            keras.layers.Dense(
                1,
                use_bias=False,
                kernel_initializer=keras.initializers.Constant(1.5),
                dtype="float64",
            ),
            keras.layers.BatchNormalization(
                center=False, scale=False, epsilon=BN_EPS, dtype="float64"
            ),
        ]
    )
    meta = keras_ga.MetaModel(
        model,
        algo="fomaml",
        inner_steps=2,
        inner_learning_rate=0.1,
        pre_adaptation_metrics=True,
        task_execution=execution,
    )
    meta.compile(optimizer="sgd", loss="mse")
    mean, var = meta.base.non_trainable_variables
    mean.assign([MOVING_MEAN])
    var.assign([MOVING_VAR])
    return meta


def episode(n=2, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    return {
        "support_x": rng.normal(size=(n, S, 1)).astype(dtype),
        "support_y": rng.normal(size=(n, S, 1)).astype(dtype),
        "query_x": rng.normal(3.0, 2.0, size=(n, Q, 1)).astype(dtype),
        "query_y": rng.normal(size=(n, Q, 1)).astype(dtype),
    }


def batch_norm(z, batch):
    return (z - batch.mean()) / np.sqrt(batch.var() + BN_EPS)


def expected(protocol, k, support_x, query_x):
    """What each protocol predicts for one task, by hand."""
    z, zs = k * query_x, k * support_x
    if protocol == "transductive":
        return batch_norm(z, z)
    if protocol == "moving_stats":
        return (z - MOVING_MEAN) / np.sqrt(MOVING_VAR + BN_EPS)
    return np.stack(
        [batch_norm(z[j], np.concatenate([zs, z[j : j + 1]])) for j in range(Q)]
    )


def mlp(execution="auto"):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(1),
        ]
    )
    meta = keras_ga.MetaModel(
        model,
        algo="maml",
        inner_steps=2,
        inner_learning_rate=0.05,
        task_execution=execution,
    )
    meta.compile(optimizer="adam", loss="mse")
    return meta


class WhatEachBatchNormalisesTest(parameterized.TestCase):
    @parameterized.product(
        protocol=list(protocols.PROTOCOLS), execution=["map", "vectorized"]
    )
    def test_predictions_match_the_batch_of_the_protocol(
        self, protocol, execution
    ):
        model = normaliser(execution)
        ep = episode()
        theta = model.base.get_weights()[0]
        results = model.run_tasks(ep, training=False, protocol=protocol)
        for i in range(2):
            k_phi = theta - results.updates[0][i].numpy()
            sx, qx = ep["support_x"][i], ep["query_x"][i]
            np.testing.assert_allclose(
                results.predictions[i].numpy(),
                expected(protocol, k_phi.item(), sx, qx),
                rtol=1e-10,
            )
            np.testing.assert_allclose(
                results.pre_predictions[i].numpy(),
                expected(protocol, theta.item(), sx, qx),
                rtol=1e-10,
            )

    def test_the_protocols_differ_with_batch_norm(self):
        model = normaliser()
        ep = episode()
        preds = [
            model.run_tasks(ep, training=False, protocol=p).predictions.numpy()
            for p in protocols.PROTOCOLS
        ]
        for a in range(3):
            for b in range(a + 1, 3):
                self.assertGreater(np.abs(preds[a] - preds[b]).max(), 0.1)

    @parameterized.parameters("map", "vectorized")
    def test_without_batch_norm_the_protocols_agree(self, execution):
        model = mlp(execution)
        ep = episode(3, seed=1, dtype="float32")
        preds = [
            model.run_tasks(ep, training=False, protocol=p).predictions.numpy()
            for p in protocols.PROTOCOLS
        ]
        for other in preds[1:]:
            np.testing.assert_allclose(other, preds[0], rtol=1e-5, atol=1e-6)

    def test_support_plus_query_on_a_conv_net_matches_a_loop(self):
        keras.utils.set_random_seed(0)
        base = keras.Sequential(
            [
                keras.Input((6, 6, 1)),
                keras.layers.Conv2D(3, 3, padding="same"),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
                keras.layers.Flatten(),
                keras.layers.Dense(2),
            ]
        )
        model = keras_ga.MetaModel(
            base, algo="fomaml", inner_steps=1, inner_learning_rate=0.1
        )
        model.compile(
            optimizer="sgd",
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        rng = np.random.default_rng(2)
        ep = {
            "support_x": rng.normal(size=(2, S, 6, 6, 1)).astype("float32"),
            "support_y": rng.integers(0, 2, size=(2, S)),
            "query_x": rng.normal(size=(2, Q, 6, 6, 1)).astype("float32"),
            "query_y": rng.integers(0, 2, size=(2, Q)),
        }
        self.assertEqual(model.resolved_task_execution, "map")
        results = model.run_tasks(
            ep, training=False, protocol="support_plus_query"
        )
        theta = [v.numpy() for v in model.base.trainable_variables]
        state = [v.numpy() for v in model.base.non_trainable_variables]
        for i in range(2):
            phi = [t - u[i].numpy() for t, u in zip(theta, results.updates)]
            for j in range(Q):
                batch = np.concatenate(
                    [ep["support_x"][i], ep["query_x"][i][j : j + 1]]
                )
                out, _ = model.base.stateless_call(
                    phi, state, batch, training=True
                )
                np.testing.assert_allclose(
                    results.predictions[i][j].numpy(),
                    out[-1].numpy(),
                    rtol=1e-4,
                    atol=1e-5,
                )


class EverywhereTest(parameterized.TestCase):
    @parameterized.parameters(*protocols.PROTOCOLS)
    def test_evaluate_tasks_records_and_applies_the_protocol(self, protocol):
        model = normaliser()
        ep = episode(4, seed=3)
        result = keras_ga.evaluate_tasks(
            model, [ep], metric="mse", protocol=protocol, verbose=0
        )
        self.assertEqual(result.protocol, protocol)
        self.assertEqual(result.as_dict()["protocol"], protocol)
        self.assertEqual(
            result.as_dict()["transductive"], protocol == "transductive"
        )
        self.assertIn(protocol, str(result))
        preds = model.run_tasks(ep, training=False, protocol=protocol)
        mse = np.mean(
            (preds.predictions.numpy() - ep["query_y"]) ** 2, axis=(1, 2)
        )
        np.testing.assert_allclose(result.per_task, mse, rtol=1e-10)

    @parameterized.parameters(*protocols.PROTOCOLS)
    def test_model_evaluate_uses_eval_protocol(self, protocol):
        model = normaliser()
        model.eval_protocol = protocol
        ep = episode(4, seed=4)
        logs = model.evaluate(ep, verbose=0, return_dict=True)
        loss = model.run_tasks(ep, training=False, protocol=protocol).loss
        self.assertAlmostEqual(logs["loss"], float(np.mean(loss)), places=6)
        result = keras_ga.evaluate_tasks(model, [ep], metric="loss", verbose=0)
        self.assertEqual(result.protocol, protocol)

    @parameterized.parameters(*protocols.PROTOCOLS)
    def test_adapted_model_predicts_under_each_protocol(self, protocol):
        model = normaliser()
        ep = episode(1, seed=5)
        sx, sy, qx = ep["support_x"][0], ep["support_y"][0], ep["query_x"][0]
        fast = model.adapt(sx, sy)
        got = protocols.predict(fast, sx, qx, protocol)
        want = model.run_tasks(ep, training=False, protocol=protocol)
        np.testing.assert_allclose(
            got.numpy(), want.predictions[0].numpy(), rtol=1e-10
        )
        if protocol != "support_plus_query":
            called = fast(qx, training=protocol == "transductive")
            np.testing.assert_allclose(
                np.asarray(called), got.numpy(), rtol=1e-10
            )

    def test_config_round_trip(self):
        model = normaliser()
        model.eval_protocol = "support_plus_query"
        config = model.get_config()
        self.assertNotIn("transductive", config)
        again = keras_ga.MetaModel.from_config(config)
        self.assertEqual(again.eval_protocol, "support_plus_query")
        config["eval_protocol"] = None
        config.pop("eval_protocol")
        config["transductive"] = False  # a config saved before protocols
        old = keras_ga.MetaModel.from_config(config)
        self.assertEqual(old.eval_protocol, "moving_stats")


class DeprecatedTransductiveTest(absltest.TestCase):
    def test_constructor_alias_warns_and_maps(self):
        for flag, protocol in ((True, "transductive"), (False, "moving_stats")):
            with self.assertWarnsRegex(DeprecationWarning, "eval_protocol="):
                model = keras_ga.MetaModel(mlp().base, transductive=flag)
            self.assertEqual(model.eval_protocol, protocol)
            self.assertEqual(model.transductive, flag)

    def test_both_refused(self):
        with self.assertRaisesRegex(
            ValueError,
            r"Pass `eval_protocol` only: `transductive` is its deprecated "
            r"alias. Received: eval_protocol='transductive', "
            r"transductive=False",
        ):
            keras_ga.MetaModel(
                mlp().base, eval_protocol="transductive", transductive=False
            )

    def test_unknown_protocol(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`eval_protocol` must be one of \['transductive', "
            r"'support_plus_query', 'moving_stats'\]. Received: "
            r"eval_protocol='non_transductive'",
        ):
            keras_ga.MetaModel(mlp().base, eval_protocol="non_transductive")

    def test_evaluate_tasks_alias_and_attribute(self):
        model = normaliser()
        ep = episode(2, seed=6)
        with self.assertWarns(DeprecationWarning):
            result = keras_ga.evaluate_tasks(
                model, [ep], metric="mse", transductive=False, verbose=0
            )
        self.assertEqual(result.protocol, "moving_stats")
        self.assertIn("non-transductive", str(result))
        with self.assertWarns(DeprecationWarning):
            model.transductive = False
        self.assertEqual(model.eval_protocol, "moving_stats")
        record = keras_ga.EvaluationResult(
            "mse", 0.0, 0.0, 0.0, 1, 1, True, np.zeros(1)
        )
        self.assertEqual(record.protocol, "transductive")


if __name__ == "__main__":
    absltest.main()
