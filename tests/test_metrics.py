"""Tests for tinyvae.metrics: the AUROC against a brute-force count over all pairs,
the ROC curve's area against the AUROC, known small cases, and one-line errors."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyvae.errors import InputError
from tinyvae.metrics import auroc, average_ranks, roc_curve


def pairwise_auroc(scores, is_anomaly):
    """The definition, counted pair by pair: P(anomaly > normal) + P(tie) / 2."""
    pos = np.asarray(scores)[np.asarray(is_anomaly, dtype=bool)]
    neg = np.asarray(scores)[~np.asarray(is_anomaly, dtype=bool)]
    wins = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return (wins + 0.5 * ties) / (len(pos) * len(neg))


def tied_scores(seed, n, n_values):
    """n integer-valued scores drawn from only n_values levels (many ties), and labels
    with at least one of each class."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, n_values, n).astype(np.float64)
    labels = rng.random(n) < 0.3
    labels[0], labels[1] = True, False
    return scores, labels


# ---- against the definition --------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n_values", [2, 5, 40, 10_000])
def test_auroc_equals_the_pairwise_count(seed, n_values):
    scores, labels = tied_scores(seed, 300, n_values)
    assert auroc(scores, labels) == pytest.approx(pairwise_auroc(scores, labels), abs=1e-12)


@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=2, max_size=60))
def test_auroc_equals_the_pairwise_count_for_any_small_input(pairs):
    scores = np.array([s for s, _ in pairs], dtype=np.float64)
    labels = np.array([a for _, a in pairs])
    if labels.all() or not labels.any():
        with pytest.raises(InputError):
            auroc(scores, labels)
        return
    assert auroc(scores, labels) == pytest.approx(pairwise_auroc(scores, labels), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("n_values", [3, 50, 10_000])
def test_roc_area_is_the_auroc(seed, n_values):
    scores, labels = tied_scores(seed, 500, n_values)
    fpr, tpr = roc_curve(scores, labels)
    area = np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)   # trapezoids
    assert area == pytest.approx(pairwise_auroc(scores, labels), abs=1e-12)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert len(fpr) == len(np.unique(scores)) + 1          # one point per distinct score


# ---- known small cases -------------------------------------------------------------


@pytest.mark.parametrize("scores, labels, expected", [
    ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0),            # perfect
    ([0.8, 0.9, 0.1, 0.2], [0, 0, 1, 1], 0.0),            # perfect, read backwards
    ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),            # all tied: every pair counts half
    ([1.0, 2.0, 3.0], [0, 1, 0], 0.5),                    # beats one normal of two
    ([1.0, 2.0, 2.0, 3.0], [0, 1, 0, 1], 0.875),          # (1 + 0.5 + 1 + 1) / 4
    ([0.0, 1.0], [False, True], 1.0),
])
def test_auroc_known_cases(scores, labels, expected):
    assert auroc(scores, labels) == expected


def test_roc_curve_known_case():
    # normal 1, anomaly 2, normal 2, anomaly 3: thresholds 3, 2, 1
    fpr, tpr = roc_curve([1.0, 2.0, 2.0, 3.0], [0, 1, 0, 1])
    np.testing.assert_array_equal(fpr, [0.0, 0.0, 0.5, 1.0])
    np.testing.assert_array_equal(tpr, [0.0, 0.5, 1.0, 1.0])


def test_average_ranks_share_ties():
    np.testing.assert_array_equal(average_ranks([30, 10, 20, 20, 20]), [5, 1, 3, 3, 3])
    np.testing.assert_array_equal(average_ranks([7.0]), [1.0])


# ---- only the order matters ---------------------------------------------------------


@pytest.mark.parametrize("transform", [
    lambda s: 3.0 * s - 7.0, np.exp, lambda s: s ** 3, lambda s: np.arctan(s / 5),
])
def test_a_strictly_increasing_transform_changes_nothing(transform):
    scores, labels = tied_scores(7, 400, 25)
    scores = scores - 12.0                                   # negative values too
    assert auroc(transform(scores), labels) == auroc(scores, labels)
    for a, b in zip(roc_curve(transform(scores), labels), roc_curve(scores, labels)):
        np.testing.assert_array_equal(a, b)


def test_negating_the_scores_mirrors_the_auroc():
    scores, labels = tied_scores(8, 400, 25)
    assert auroc(-scores, labels) == pytest.approx(1.0 - auroc(scores, labels), abs=1e-12)


def test_the_order_of_the_images_does_not_matter():
    scores, labels = tied_scores(9, 300, 30)
    perm = np.random.default_rng(0).permutation(300)
    assert auroc(scores[perm], labels[perm]) == pytest.approx(auroc(scores, labels), abs=1e-12)


def test_infinite_scores_are_ranked_like_any_other():
    assert auroc([-np.inf, 0.0, np.inf, np.inf], [0, 0, 1, 0]) == pytest.approx(
        pairwise_auroc(np.array([-np.inf, 0.0, np.inf, np.inf]), [0, 0, 1, 0]))


# ---- bad input: one line that names the problem ---------------------------------------


@pytest.mark.parametrize("scores, labels, words", [
    ([1.0, 2.0, 3.0], [0, 1], "3 scores but 2 labels"),
    ([1.0, 2.0, 3.0], [0, 0, 0], "no anomalies"),
    ([1.0, 2.0, 3.0], [True, True, True], "no normal images"),
    ([1.0, np.nan, 3.0], [0, 1, 0], "NaN"),
    ([[1.0, 2.0]], [[0, 1]], "1-D"),
    ([1.0, 2.0], [0, 2], "True/False"),
    ([1.0, 2.0], [0.0, 1.0], "True/False"),
    (["a", "b"], [0, 1], "real numbers"),
])
@pytest.mark.parametrize("fn", [auroc, roc_curve])
def test_bad_input_is_one_line_naming_the_problem(fn, scores, labels, words):
    with pytest.raises(InputError, match=words) as e:
        fn(scores, labels)
    assert "\n" not in str(e.value)


# ---- active latent units -----------------------------------------------------------


def test_active_units_counts_the_units_whose_mean_moves_with_x():
    """Unit 0 varies (variance 1), unit 1 barely (1e-4), unit 2 is constant, unit 3 just above 0.01."""
    rng = np.random.default_rng(0)
    n = 20_000
    z = np.stack([rng.standard_normal(n), 0.01 * rng.standard_normal(n), np.full(n, 3.0),
                  0.2 * rng.standard_normal(n)], axis=1)                # variances 1, 1e-4, 0, 0.04
    from tinyvae.metrics import active_units, unit_activity
    assert unit_activity(z) == pytest.approx([1.0, 1e-4, 0.0, 0.04], rel=0.05, abs=1e-12)
    assert active_units(z) == 2                      # units 0 and 3
    assert active_units(z, threshold=0.05) == 1
    assert active_units(z, threshold=1e-6) == 3      # a constant unit is never active


def test_active_units_refuses_a_single_image():
    from tinyvae.metrics import active_units
    with pytest.raises(InputError, match="at least two images"):
        active_units(np.zeros((1, 5)))
