import numpy as np
import pytest

from training.metrics import classification_metrics, regression_metrics


def test_classification_metrics_values() -> None:
    y = np.array([0, 0, 1, 2, 2, 2])
    p = np.array([0, 1, 1, 2, 2, 0])
    m = classification_metrics(y, p, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    # per-class F1: a 0.5, b 2/3, c 0.8; macro = mean, weighted by support 2/1/3
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)
    assert m["weighted_f1"] == pytest.approx((2 * 0.5 + 2 / 3 + 3 * 0.8) / 6)


def test_regression_metrics_values() -> None:
    t = np.array([-2.0, -0.4, 0.0, 1.2, 3.0])
    p = np.array([-1.6, 0.3, 0.2, 1.4, 2.2])
    m = regression_metrics(t, p)
    assert m["mae"] == pytest.approx(np.mean([0.4, 0.7, 0.2, 0.2, 0.8]))
    assert m["acc2_has0"] == pytest.approx(4 / 5)  # -0.4 predicted >= 0
    assert m["acc2_non0"] == pytest.approx(3 / 4)  # zero label dropped
    assert m["acc7"] == pytest.approx(4 / 5)  # rounds: -2/-2, 0/0, 0/0, 1/1, 3/2
    assert m["corr"] == pytest.approx(np.corrcoef(t, p)[0, 1])
