"""Few-shot datasets: Omniglot, miniImageNet and sine-wave regression.

Each loader returns class-major arrays; each `*_episodes` helper returns a
`tf.data.Dataset` of episode dicts (see `keras_ga.episode`).
"""

from keras_ga.datasets.miniimagenet import load_miniimagenet
from keras_ga.datasets.miniimagenet import miniimagenet_episodes
from keras_ga.datasets.omniglot import load_omniglot
from keras_ga.datasets.omniglot import omniglot_episodes
from keras_ga.datasets.sine import sine_task_params
from keras_ga.datasets.sine import sine_tasks

__all__ = [
    "load_miniimagenet",
    "load_omniglot",
    "miniimagenet_episodes",
    "omniglot_episodes",
    "sine_task_params",
    "sine_tasks",
]
