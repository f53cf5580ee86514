"""TensorFlow's stateless random ops in NumPy, draw for draw.

keras_ga's episode samplers key every random draw by `(seed, task index)`
through TensorFlow's stateless ops (`tf.random.split`,
`tf.random.stateless_uniform`, ...), so that task `i` of a seed is the same
on every run. The NumPy episode path (`keras_ga.numpy_episodes`), for
backends without TensorFlow, makes the same draws with the functions here:
the same Philox-4x32-10 counter-based generator, the same derivation of
its key and counter from a `[2]` seed, and the same conversion of its
32-bit words into floats, integers and permutations as TensorFlow's CPU
kernels with the default algorithm (`alg="auto_select"`, Philox on CPU and
GPU). Uniform draws, integers, keys and permutations come out bit for
bit; normal draws agree to float32 rounding (TensorFlow's `log` and `sin`
may differ from NumPy's in the last bit). Imports NumPy only.

A key is a `[2]` integer array, as TensorFlow's `seed` argument.

Example:

```python
key = np.array([seed, index])
class_key, example_key = stateless_random.split(key, 2)
scores = stateless_random.uniform([num_classes], class_key)
# == tf.random.stateless_uniform([num_classes], class_key).numpy()
```

References:
    Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3", SC 2011
    (the Philox generator).
"""

from __future__ import annotations

import numpy as np

# Philox-4x32's round multipliers and key increments (Weyl sequence).
_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MULTIPLIERS = (np.uint64(_M0), np.uint64(_M1))
_WEYL = (np.uint32(_W0), np.uint32(_W1))
# The fixed key with which TensorFlow scrambles a seed into key and counter.
_SEED_KEY = (0x3EC8F720, 0x02461E29)
_LOW = np.uint64(0xFFFFFFFF)
# Up to this many Philox blocks, Python ints beat NumPy's per-call overhead.
_FEW_CALLS = 8
_32 = np.uint64(32)


def _philox(counter, key):
    """Philox-4x32-10: `counter [n, 4]`, `key [2]` (uint32) -> `[n, 4]`."""
    c0, c1, c2, c3 = (counter[:, i].astype(np.uint64) for i in range(4))
    k0, k1 = (np.uint64(k) for k in key)
    with np.errstate(over="ignore"):
        for round_ in range(10):
            p0, p1 = _MULTIPLIERS[0] * c0, _MULTIPLIERS[1] * c2
            c0, c1, c2, c3 = (
                (p1 >> _32) ^ c1 ^ k0,
                p1 & _LOW,
                (p0 >> _32) ^ c3 ^ k1,
                p0 & _LOW,
            )
            if round_ < 9:
                k0 = np.uint64(np.uint32(k0) + _WEYL[0])
                k1 = np.uint64(np.uint32(k1) + _WEYL[1])
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def _philox_ints(counter, key):
    """`_philox` of one counter in Python ints: faster for a single block."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for round_ in range(10):
        p0, p1 = _M0 * c0, _M1 * c2
        c0, c1, c2, c3 = (
            (p1 >> 32) ^ c1 ^ k0,
            p1 & 0xFFFFFFFF,
            (p0 >> 32) ^ c3 ^ k1,
            p0 & 0xFFFFFFFF,
        )
        if round_ < 9:
            k0 = (k0 + _W0) & 0xFFFFFFFF
            k1 = (k1 + _W1) & 0xFFFFFFFF
    return [c0, c1, c2, c3]


def _words(value: np.uint64) -> list[int]:
    return [int(value & _LOW), int(value >> _32)]


def _key_and_counter(key):
    """The Philox key and counter TensorFlow derives from a `[2]` seed."""
    seed = np.asarray(key)
    if seed.shape != (2,) or not np.issubdtype(seed.dtype, np.integer):
        raise ValueError(
            "`key` must be a pair of integers, shape [2]. Received: "
            f"key of shape {seed.shape} and dtype {seed.dtype}."
        )
    # Sign-extended to 64 bits, as TensorFlow reads int32 and int64 seeds.
    s0, s1 = seed.astype(np.int64).view(np.uint64)
    mix = _philox_ints([*_words(s0), *_words(s1)], _SEED_KEY)
    return mix[:2], mix[2:]


def random_bits(key, count: int) -> np.ndarray:
    """The first `count` 32-bit words of the stream of `key`, as uint32.

    Word `i` comes from Philox call `i // 4` (counter `i // 4` above the
    seed's), as TensorFlow's kernels fill their outputs.

    Examples:
        >>> keras_ga.stateless_random.random_bits([0, 1], 3).dtype
        dtype('uint32')
    """
    philox_key, high = _key_and_counter(key)
    calls = -(-count // 4)
    if calls <= _FEW_CALLS:
        blocks = [_philox_ints([i, 0, *high], philox_key) for i in range(calls)]
        return np.array(blocks, np.uint32).reshape(-1)[:count]
    index = np.arange(calls, dtype=np.uint64)
    counter = np.empty([calls, 4], np.uint32)
    counter[:, 0] = index & _LOW
    counter[:, 1] = index >> _32
    counter[:, 2:] = high
    return _philox(counter, philox_key).reshape(-1)[:count]


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _unit_floats(words) -> np.ndarray:
    """uint32 words to float32 in [0, 1) from their low 23 bits."""
    ones = (words & np.uint32(0x7FFFFF)) | np.uint32(0x3F800000)
    return ones.view(np.float32) - np.float32(1.0)


def uniform(shape, key, minval=0.0, maxval=1.0) -> np.ndarray:
    """`tf.random.stateless_uniform(shape, key, minval, maxval)`, float32.

    Examples:
        >>> key = np.array([7, 3])
        >>> np.array_equal(keras_ga.stateless_random.uniform([5], key),
        ...                tf.random.stateless_uniform([5], key).numpy())
        True
    """
    unit = _unit_floats(random_bits(key, _size(shape))).reshape(shape)
    low, high = np.float32(minval), np.float32(maxval)
    return unit * (high - low) + low


def uniform_full_int64(shape, key) -> np.ndarray:
    """`tf.random.stateless_uniform(shape, key, None, None, tf.int64)`.

    Examples:
        >>> keras_ga.stateless_random.uniform_full_int64([2], [0, 0]).dtype
        dtype('int64')
    """
    words = random_bits(key, 2 * _size(shape)).astype(np.uint64)
    full = words[0::2] | (words[1::2] << _32)
    return full.view(np.int64).reshape(shape)


def uniform_int(shape, key, minval: int, maxval: int) -> np.ndarray:
    """`tf.random.stateless_uniform(..., minval, maxval, dtype=tf.int32)`.

    Examples:
        >>> draws = keras_ga.stateless_random.uniform_int([1000], [1, 2], 3, 7)
        >>> sorted(set(draws.tolist()))
        [3, 4, 5, 6]
    """
    if not maxval > minval:
        raise ValueError(
            "`maxval` must be greater than `minval`. Received: "
            f"minval={minval}, maxval={maxval}."
        )
    words = random_bits(key, _size(shape))
    span = np.uint32(maxval - minval)
    return (
        (minval + (words % span).astype(np.int64))
        .astype(np.int32)
        .reshape(shape)
    )


def normal(shape, key) -> np.ndarray:
    """`tf.random.stateless_normal(shape, key)`, float32 (Box-Muller).

    Examples:
        >>> np.allclose(keras_ga.stateless_random.normal([4], [1, 2]),
        ...             tf.random.stateless_normal([4], [1, 2]), atol=3e-6)
        True
    """
    size = _size(shape)
    words = random_bits(key, size + size % 2)
    radius = np.maximum(_unit_floats(words[0::2]), np.float32(1e-7))
    radius = np.sqrt(np.float32(-2.0) * np.log(radius))
    angle = np.float32(2.0 * np.pi) * _unit_floats(words[1::2])
    pairs = np.stack([np.sin(angle) * radius, np.cos(angle) * radius], -1)
    return pairs.reshape(-1)[:size].astype(np.float32).reshape(shape)


def split(key, num: int = 2) -> np.ndarray:
    """`tf.random.split(key, num)` for an int64 key: `[num, 2]` keys.

    Examples:
        >>> key = np.array([0, 5])
        >>> np.array_equal(keras_ga.stateless_random.split(key, 3),
        ...                tf.random.split(tf.constant(key), 3).numpy())
        True
    """
    return uniform_full_int64([num, 2], key)


def fold_in(key, data: int) -> np.ndarray:
    """`tf.random.fold_in(key, data)` for a Python int `data` (int32).

    Examples:
        >>> keras_ga.stateless_random.fold_in([0, 5], 1)[1]
        np.int64(1)
    """
    first = random_bits(key, 1).view(np.int32)[0]
    return np.array([first, data], np.int64)


def permutation(size: int, key) -> np.ndarray:
    """The order `tf.random.experimental.stateless_shuffle` gives `size` rows.

    `stateless_shuffle(values, key)` is `values[permutation(len(values),
    key)]`: a forward Fisher-Yates shuffle drawing `size - 1` words.

    Examples:
        >>> sorted(keras_ga.stateless_random.permutation(5, [0, 1]).tolist())
        [0, 1, 2, 3, 4]
    """
    order = np.arange(size)
    words = random_bits(key, max(size - 1, 0))
    for i in range(size - 1):
        j = i + int(words[i] % np.uint32(size - i))
        order[i], order[j] = order[j], order[i]
    return order


def shuffle(values, key) -> np.ndarray:
    """`tf.random.experimental.stateless_shuffle(values, key)` (axis 0).

    Examples:
        >>> values = np.arange(6)
        >>> np.array_equal(
        ...     keras_ga.stateless_random.shuffle(values, [3, 4]),
        ...     tf.random.experimental.stateless_shuffle(values, [3, 4]))
        True
    """
    values = np.asarray(values)
    return values[permutation(values.shape[0], key)]
