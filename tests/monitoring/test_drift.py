"""Drift decisions on generated data: known shifts are found, same-distribution windows rarely alarm, the
default test follows the documented rule, per-model settings override it."""

from __future__ import annotations

import numpy as np
import pytest
from loopline_monitoring import drift
from loopline_monitoring.frames import Frame
from loopline_monitoring.policy import DriftPolicy, Policies, PolicyError
from loopline_monitoring.profiles import PREDICTION, PreparedProfile
from scipy import stats as sps

from tests.monitoring import data

ALPHA = 0.05


@pytest.fixture(scope="module")
def profile() -> PreparedProfile:
    return PreparedProfile(data.reference_profile("fraud", 1))


def window(profile: PreparedProfile, rng: np.random.Generator, n: int, shift: data.Shift | None = None) -> Frame:
    numeric, categories, score = data.sample(rng, n, shift)
    feature = profile.categorical[0]
    codes = np.array([[feature.code_of.get(c, len(feature.categories) - 1)] for c in categories], dtype=np.int64)
    return Frame([str(i) for i in range(n)], np.zeros(n), numeric, codes, score)


def policy(**overrides: object) -> DriftPolicy:
    return DriftPolicy.model_validate(overrides)


def deciding(evaluation: drift.Evaluation) -> dict[str, drift.Score]:
    return {s.feature: s for s in evaluation.scores if s.deciding}


@pytest.mark.parametrize("n", [400, 3000], ids=["p-value tests", "distance tests"])
def test_a_known_shift_is_detected(profile: PreparedProfile, n: int) -> None:
    rng = np.random.default_rng(1)
    shifted = ("f02", "f03", "f04", "f05", "f06")
    shift = data.Shift(mean=0.6, features=shifted, category_p=np.array([0.1, 0.1, 0.6, 0.1, 0.1]))
    evaluation = drift.evaluate(profile, policy(), window(profile, rng, n, shift))
    scores = deciding(evaluation)
    assert {name for name, s in scores.items() if s.drifted} == {*shifted, "merchant_category"}
    assert evaluation.result.drifted_share == pytest.approx(6 / 9)
    assert evaluation.dataset_drift
    # the same shift on unshifted data: nothing
    calm = drift.evaluate(profile, policy(), window(profile, rng, n))
    assert not calm.dataset_drift


def test_a_shift_of_the_inputs_the_model_uses_moves_the_prediction(profile: PreparedProfile) -> None:
    rng = np.random.default_rng(2)
    evaluation = drift.evaluate(profile, policy(), window(profile, rng, 800, data.Shift(mean=0.8, features=("f00",))))
    scores = deciding(evaluation)
    assert scores["f00"].drifted and scores[PREDICTION].drifted
    assert evaluation.result.drifted_share == pytest.approx(1 / 9)  # below the share threshold...
    assert evaluation.dataset_drift  # ...but the prediction drifted


@pytest.mark.parametrize(("n", "windows"), [(300, 400), (2500, 120)], ids=["p-value tests", "distance tests"])
def test_false_alarm_rate_on_same_distribution_windows_is_within_alpha(
    profile: PreparedProfile, n: int, windows: int
) -> None:
    rng = np.random.default_rng(12345)
    alarms = flags = 0
    raw: dict[str, int] = {}
    for _ in range(windows):
        evaluation = drift.evaluate(profile, policy(alpha=ALPHA), window(profile, rng, n))
        alarms += evaluation.dataset_drift
        flags += any(s.drifted for s in evaluation.deciding())
        for s in evaluation.deciding():
            if s.p_value is not None and s.p_value <= ALPHA:
                raw[s.feature] = raw.get(s.feature, 0) + 1
    # The dataset-level decision (what raises an alert) is at most the configured level.
    assert alarms / windows <= ALPHA
    # Any single flag after Holm's correction: not significantly above alpha (one-sided binomial test; the
    # tests share one fixed reference sample, so the rate measured here is conditional on it).
    assert sps.binomtest(flags, windows, ALPHA, alternative="greater").pvalue > 0.001
    # Uncorrected, each p-value test rejects about alpha of the time: the tests themselves are calibrated.
    for feature, count in raw.items():
        assert count / windows <= 2.5 * ALPHA, feature


def test_default_test_by_type_and_window_size(profile: PreparedProfile) -> None:
    rng = np.random.default_rng(3)
    small = deciding(drift.evaluate(profile, policy(), window(profile, rng, 1000)))
    large = deciding(drift.evaluate(profile, policy(), window(profile, rng, 1001)))
    assert small["f00"].method == "ks" and small["merchant_category"].method == "chi2"
    assert large["f00"].method == "wasserstein" and large["merchant_category"].method == "jensen_shannon"
    assert small["f00"].p_value is not None and large["f00"].p_value is None
    assert large["f00"].threshold == 0.1 and large["merchant_category"].threshold == 0.1


def test_a_numeric_feature_with_few_values_is_compared_as_categories() -> None:
    from loopline_monitoring.profiles import build_profile

    rng = np.random.default_rng(4)
    reference = rng.integers(0, 3, 5000).astype(float)
    prepared = PreparedProfile(build_profile(model_name="m", model_version=1, numeric={"n_cards": reference}))
    feature = prepared.numeric[0]
    assert feature.treat_as == "categorical" and feature.categories == ["0", "1", "2", "__other__"]
    live = np.r_[rng.integers(0, 3, 300).astype(float), np.full(60, 7.0)]  # a value never seen in training
    frame = Frame([str(i) for i in range(len(live))], np.zeros(len(live)), live[:, None],
                  np.zeros((len(live), 0), dtype=np.int64), np.full(len(live), np.nan))
    scores = deciding(drift.evaluate(prepared, policy(), frame))
    assert scores["n_cards"].method == "chi2" and scores["n_cards"].drifted


def test_per_model_policy_overrides_methods_and_thresholds(profile: PreparedProfile) -> None:
    policies = Policies.from_mapping({
        "default": {"alpha": 0.01},
        "models": {"fraud": {"numeric_method": "psi", "features": {"f01": {"method": "ks"}, "f07": {"ignore": True},
                                                                    "f02": {"threshold": 0.05}},
                             "drift_share": 0.2}},
    })
    assert policies.for_model("other").alpha == 0.01 and policies.for_model("other").drift_share == 0.5
    chosen = policies.for_model("fraud")
    assert chosen.alpha == 0.01  # inherited from the file's default
    scores = deciding(drift.evaluate(profile, chosen, window(profile, np.random.default_rng(5), 500)))
    assert scores["f00"].method == "psi" and scores["f00"].threshold == 0.25
    assert scores["f02"].method == "psi" and scores["f02"].threshold == 0.05
    assert scores["f01"].method == "ks"
    assert "f07" not in scores
    with pytest.raises(PolicyError):
        Policies.from_mapping({"models": {"fraud": {"numeric_method": "chi2"}}})
    with pytest.raises(PolicyError):
        Policies.from_mapping({"default": {"no_such_setting": 1}})


def test_histograms_keep_out_of_range_values_in_the_edge_bins(profile: PreparedProfile) -> None:
    frame = window(profile, np.random.default_rng(6), 200)
    frame.numeric[:50, 0] = 1e9  # far above the reference's maximum
    histogram = next(h for h in drift.evaluate(profile, policy(), frame).result.histograms if h.feature == "f00")
    assert sum(histogram.current) == pytest.approx(1.0)
    assert histogram.current[-1] >= 50 / 200


def test_a_profile_without_samples_falls_back_to_its_bins_and_never_fails() -> None:
    from loopline_monitoring.profiles import build_profile

    from loopline.profiles.v1 import profile_pb2

    rng = np.random.default_rng(7)
    proto = build_profile(model_name="m", model_version=1, numeric={"binned": rng.normal(size=2000)})
    del proto.features[0].numeric.sample[:]  # a writer that kept bins only
    proto.features.add(name="empty", kind=profile_pb2.FEATURE_KIND_NUMERIC)  # nothing at all
    prepared = PreparedProfile(proto)
    live = np.c_[rng.normal(1.0, size=400), rng.normal(size=400)]
    frame = Frame([str(i) for i in range(400)], np.zeros(400), live, np.zeros((400, 0), dtype=np.int64),
                  np.full(400, np.nan))
    scores = deciding(drift.evaluate(prepared, policy(), frame))
    assert scores["binned"].method == "psi" and scores["binned"].drifted
    assert "empty" not in scores
