"""Calibration measures: ECE and temperature scaling."""

import numpy as np
import pytest

from ser_core.metrics import apply_temperature, expected_calibration_error, fit_temperature, softmax


def test_ece_of_perfectly_calibrated_and_overconfident_predictions():
    y = np.array([0, 0, 1, 1])
    calibrated = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])  # argmax 0: half right
    assert expected_calibration_error(calibrated, y) == pytest.approx(0.0)
    sure = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])  # confidence 1, accuracy 0.5
    assert expected_calibration_error(sure, y) == pytest.approx(0.5)


def test_temperature_recovers_the_scale_that_made_the_data():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, (4000, 5))
    y = np.array([rng.choice(5, p=p) for p in softmax(true_logits)])
    t = fit_temperature(true_logits * 3.0, y)  # an over-confident model: logits 3x too large
    assert t == pytest.approx(3.0, rel=0.1)
    before = expected_calibration_error(softmax(true_logits * 3.0), y)
    after = expected_calibration_error(apply_temperature(softmax(true_logits * 3.0), t), y)
    assert after < before / 3
    np.testing.assert_allclose(apply_temperature(softmax(true_logits), 1.0), softmax(true_logits), atol=1e-6)
