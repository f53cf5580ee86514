"""A tiny sine example run, for `resume_example_test.py`.

    python -m tests.resume_example_worker WORK_DIR [PAUSE_AFTER_STEP]

runs `examples.train.train_and_evaluate(SINE, WORK_DIR)`: the sine
experiment (uniform, then agreement weighting) on a tiny budget. With
`PAUSE_AFTER_STEP=k` it writes `WORK_DIR/paused` after its k-th training
meta-step (counted over both runs, from 1) and then waits to be killed.
"""

import dataclasses
import os
import sys
import time

import keras

from examples import train
from examples.configs import sine

# Epochs of 3 meta-steps: 2 epochs per weighting (validation is tested on
# Omniglot, in resume_example_test.py).
SINE = dataclasses.replace(
    sine.PRESETS[sine.DEFAULT],
    hidden=4,
    iterations=6,
    eval_every=3,
    val_tasks=0,
    eval_tasks=4,
)


class PauseAfterStep(keras.callbacks.Callback):
    """Writes `path` after meta-step `step` of the process, then waits."""

    def __init__(self, step, path):
        super().__init__()
        self.step, self.path, self.count = step, path, 0

    def on_train_batch_end(self, batch, logs=None):
        self.count += 1
        if self.count == self.step:
            with open(self.path, "w") as f:
                f.write(str(self.count))
            while True:
                time.sleep(1)


def main(argv):
    work = argv[1]
    callbacks = []
    if len(argv) > 2:
        pause = os.path.join(work, "paused")
        callbacks.append(PauseAfterStep(int(argv[2]), pause))
    train.train_and_evaluate(SINE, work, callbacks=callbacks)


if __name__ == "__main__":
    main(sys.argv)
