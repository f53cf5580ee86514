"""Reptile: the outer gradient is theta - theta_i.

References:
    Nichol, Achiam, Schulman. On First-Order Meta-Learning Algorithms.
    arXiv:1803.02999, 2018.
"""

from __future__ import annotations

from keras_ga.algorithms import base


class Reptile(base.Algorithm):
    """Reptile: the optimizer receives theta - theta_i as the gradient.

    With `SGD(lr=eps)` the outer step goes to theta + eps (theta_i - theta)
    (weighted over tasks). The inner loop runs over the support set in
    sub-batches, and the moving statistics follow the last inner step's
    sub-batch rather than the query pass: the query set is not part of
    Reptile's training.

    Examples:
        >>> base = keras_ga.mlp((1,), 1, (8,))
        >>> model = keras_ga.MetaModel(base, algo="reptile")
        >>> rule = keras_ga.algorithms.get("reptile")
        >>> rule.default_inner_batch_size(10, steps=5)  # 5 sub-batches of 2
        2
        >>> rule.default_inner_batch_size(10, steps=5, batch_statistics=True)
        10
    """

    name = "reptile"

    def default_inner_batch_size(
        self, support_size: int, steps: int, batch_statistics: bool = False
    ) -> int:
        """`ceil(S / steps)`, or S for a model with batch statistics.

        `ceil(S / steps)`: the `steps` sub-batches cover the support set
        (Algorithm 1, line 5 of the paper). A model with BatchNormalization
        takes the whole support set at every step instead: with few
        examples per step (one, for 5-way 1-shot and 5 steps) the batch
        statistics are those of a handful of examples (of one, all
        features normalised to zero), and meta-training fails (on Omniglot
        5-way 1-shot, conv4 reached 26% against 59% with the whole support
        set). The reference implementation never steps on fewer examples
        than its `inner_batch_size` of 10 either: it repeats examples to
        fill a batch.
        """
        if batch_statistics:
            return support_size
        return -(-support_size // steps)

    def train(self, theta, learner) -> base.TaskResults:
        phi, last_state = learner.adapt(theta, second_order=False)
        return base.task_results(
            theta,
            phi,
            base.difference(theta, phi),
            learner.query(phi),
            states=last_state,
        )
