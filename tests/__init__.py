"""keras_ga's tests; `tests.support` holds what they share."""
