"""The long-lag check of the ground truth (localcond.campaign.long_lag) and the replica
table's error calibration, on cases worked by hand."""

import math

import pytest

from localcond.campaign.long_lag import long_lag_check, pooled
from localcond.campaign.replicas import error_calibration


def card_row(value, stderr, t, windows, tau_systematic=0.0):
    return {"molar_conductivity": {"value": value, "stderr": stderr,
                                   "total_error": math.hypot(stderr, tau_systematic)},
            "tau_window_ps": [t, 2 * t], "tau_systematic": {"value": tau_systematic},
            "windows": [{"tau_window_ps": [s, 2 * s], "value": v, "stderr": e} for s, v, e in windows]}


def test_pooled_is_the_inverse_variance_mean():
    value, error = pooled([(100.0, 10.0), (130.0, 10.0), (7.0, None), (5.0, float("nan"))])
    assert value == pytest.approx(115.0) and error == pytest.approx(10.0 / math.sqrt(2))
    assert pooled([(1.0, 0.0)]) is None


def test_a_window_that_still_moves_gets_a_systematic_that_covers_it():
    """Window [3, 6]: 1500 ± 30 (grid) and 1460 ± 40 (replica) pool to 1485.6 ± 24;
    [45, 90] 1700 ± 60 and [64, 128] 1660 ± 80 (grid), [45, 90] 1640 ± 60 (replica) pool to
    Λ_long. The systematic is √(Δ² − σ_Δ²); the total error folds it with the stderr."""
    card = card_row(1500.0, 30.0, 3.0, [(3.0, 1500.0, 30.0), (45.0, 1700.0, 60.0), (64.0, 1660.0, 80.0)], 10.0)
    replica = {"molar_conductivity": {"value": 1460.0, "stderr": 40.0},
               "windows": [{"tau_window_ps": [45.0, 90.0], "value": 1640.0, "stderr": 60.0}]}
    out = long_lag_check(card, replica)
    w = (1500 / 30**2 + 1460 / 40**2) / (1 / 30**2 + 1 / 40**2)
    sw = (1 / 30**2 + 1 / 40**2) ** -0.5
    weights = [1 / 60**2, 1 / 80**2, 1 / 60**2]
    long = (1700 / 60**2 + 1660 / 80**2 + 1640 / 60**2) / sum(weights)
    sl = sum(weights) ** -0.5
    delta, sigma = long - w, math.hypot(sw, sl)
    assert out["window"]["value"] == pytest.approx(w) and out["long"]["value"] == pytest.approx(long)
    assert out["z"] == pytest.approx(delta / sigma)
    assert out["systematic"] == pytest.approx(math.sqrt(delta**2 - sigma**2))
    assert out["total_error"] == pytest.approx(math.hypot(30.0, out["systematic"]))
    assert out["total_error"] >= abs(delta) * 0.9  # it covers the drift


def test_a_window_that_holds_keeps_its_error():
    card = card_row(800.0, 20.0, 16.0, [(16.0, 800.0, 20.0), (45.0, 810.0, 40.0), (64.0, 790.0, 50.0)], 15.0)
    out = long_lag_check(card, None)
    assert out["tested"] and out["systematic"] == 0.0 and out["total_error"] == pytest.approx(math.hypot(20, 15))
    assert not long_lag_check(card_row(800.0, 20.0, 16.0, [(16.0, 800.0, 20.0)]), None)["tested"]


def test_error_calibration_counts_z():
    """rms z of five systems: its standard error is √(1/10) = 0.32; within 2 of them of 1
    is calibrated."""
    rows = [{"system": f"s{k}", "z_replica_vs_card": z} for k, z in enumerate([1.0, -1.0, 1.0, -1.0, 3.0])]
    out = error_calibration(rows)
    assert out["rms_z"] == pytest.approx(math.sqrt(13 / 5)) and out["beyond_2_sigma"] == ["s4"]
    assert out["calibrated"]  # 1.61 - 1 < 0.63
    wide = error_calibration([{"system": "a", "z_replica_vs_card": 2.0}] * 5)
    assert wide["rms_z"] == pytest.approx(2.0) and not wide["calibrated"]
