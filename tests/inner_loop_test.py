"""Tests of the functional inner loop: SGD steps, sub-batches, optimizers."""

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

from keras_ga import inner_loop

D = 3


def linear_task(s=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(s, D))
    return tf.constant(x), tf.constant(x @ rng.normal(size=(D, 1)))


def mse_grad(theta, x, y):
    return 2.0 / len(x) * x.T @ (x @ theta - y)


def linear_loop(optimizer):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((D,), dtype="float64"),
            keras.layers.Dense(1, use_bias=False, dtype="float64"),
        ]
    )
    loop = inner_loop.InnerLoop(model, keras.losses.get("mse"), optimizer)
    theta = [tf.convert_to_tensor(v) for v in model.trainable_variables]
    return loop, theta


def adapt(loop, theta, x, y, steps, batch_size=None):
    phi, _ = loop.adapt(
        theta,
        [],
        x,
        y,
        steps=steps,
        batch_size=batch_size or x.shape[0],
        seed=tf.constant([0, 0]),
        second_order=False,
    )
    return phi[0].numpy()


def scaled_sgd(learning_rate):
    """SGD whose step t is scaled by t + 1: its state counts the steps."""

    def init(params):
        del params
        return tf.constant(1.0, tf.float64)

    def update(params, grads, scale):
        params = [p - learning_rate * scale * g for p, g in zip(params, grads)]
        return params, scale + 1.0

    return inner_loop.InnerOptimizer(init, update)


class InnerLoopTest(parameterized.TestCase):
    @parameterized.parameters(1, 3)
    def test_sgd_steps_match_closed_form(self, steps):
        loop, theta = linear_loop(inner_loop.sgd(0.1))
        x, y = linear_task()
        expected = theta[0].numpy()
        for _ in range(steps):
            expected = expected - 0.1 * mse_grad(expected, x.numpy(), y.numpy())
        np.testing.assert_allclose(
            adapt(loop, theta, x, y, steps), expected, rtol=1e-12
        )

    def test_optimizer_state_travels_through_the_steps(self):
        loop, theta = linear_loop(scaled_sgd(0.05))
        x, y = linear_task(seed=1)
        expected = theta[0].numpy()
        for t in range(3):
            grad = mse_grad(expected, x.numpy(), y.numpy())
            expected = expected - 0.05 * (t + 1) * grad
        np.testing.assert_allclose(
            adapt(loop, theta, x, y, 3), expected, rtol=1e-12
        )

    def test_sub_batches_partition_the_support_set(self):
        # 6 examples in 3 steps of 2 with a tiny step: the summed update is
        # the full-batch gradient times 3.
        loop, theta = linear_loop(inner_loop.sgd(1e-7))
        x, y = linear_task(seed=2)
        full = mse_grad(theta[0].numpy(), x.numpy(), y.numpy())
        update = theta[0].numpy() - adapt(loop, theta, x, y, 3, batch_size=2)
        np.testing.assert_allclose(update, 1e-7 * 3 * full, rtol=1e-5)

    def test_task_learner_adapts_on_support_and_scores_query(self):
        loop, theta = linear_loop(inner_loop.sgd(0.1))
        sx, sy = linear_task(seed=3)
        qx, qy = linear_task(s=4, seed=3)
        learner = inner_loop.TaskLearner(
            loop, [], sx, sy, qx, qy, steps=2, batch_size=6, seed=[0, 0]
        )
        phi, _ = learner.adapt(theta)
        np.testing.assert_allclose(
            phi[0].numpy(), adapt(loop, theta, sx, sy, 2), rtol=1e-12
        )
        query = learner.query(phi)
        residual = qx.numpy() @ phi[0].numpy() - qy.numpy()
        self.assertAlmostEqual(float(query.loss), np.mean(residual**2), 10)
        self.assertEqual(query.predictions.shape, (4, 1))


if __name__ == "__main__":
    absltest.main()
