import numpy as np
import pytest

from msf.metrics import MetricAccumulator, bootstrap_ci, ce7454_fscore, confusion_matrix


def test_perfect_prediction_scores_one():
    gt = np.random.default_rng(0).integers(0, 19, size=(32, 32))
    assert ce7454_fscore(gt, gt.copy()) == pytest.approx(1.0, abs=1e-6)


def test_class_only_in_prediction_is_not_scored():
    gt = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, 2], [1, 1]])
    # class 0: tp 1, fp 0, fn 1 -> p 1, r 0.5, f 2/3; class 1 perfect; class 2 (pred only) unscored
    assert ce7454_fscore(gt, pred) == pytest.approx((2 / 3 + 1) / 2, abs=1e-6)


def test_missing_class_scores_zero():
    gt = np.array([[0, 3], [0, 0]])
    pred = np.zeros((2, 2), dtype=int)
    # class 0: tp 3, fp 1 -> p .75, r 1, f 6/7; class 3 never predicted -> f 0
    assert ce7454_fscore(gt, pred) == pytest.approx((6 / 7 + 0) / 2, abs=1e-6)


def test_dataset_score_is_mean_over_images_not_pooled():
    acc = MetricAccumulator()
    acc.update(np.array([[0, 3], [0, 0]]), np.zeros((2, 2), dtype=int))
    acc.update(np.array([[1, 1], [1, 1]]), np.ones((2, 2), dtype=int))
    s = acc.summary()
    assert s["f_score"] == pytest.approx((3 / 7 + 1) / 2, abs=1e-6)
    # literature F1 over the pooled confusion matrix: foreground classes 1 (perfect) and 3 (missed)
    assert s["f1_literature"] == pytest.approx(0.5)
    assert s["per_class"]["eye_g"]["support"] == 1


def test_confusion_matrix_counts():
    cm = confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), n=3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_images():
    rng = np.random.default_rng(1)
    few = rng.normal(0.75, 0.05, 25)
    many = np.concatenate([few, rng.normal(0.75, 0.05, 375)])
    lo, hi = bootstrap_ci(few)
    assert lo < few.mean() < hi
    lo2, hi2 = bootstrap_ci(many)
    assert lo2 < many.mean() < hi2
    # the standard error shrinks like 1/sqrt(n): 16x the images, about a quarter of the width
    assert (hi2 - lo2) < 0.4 * (hi - lo)
    # a normal-theory 95 % interval of the mean is about ±1.96 standard errors
    se = few.std(ddof=1) / np.sqrt(few.size)
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.2)
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    assert bootstrap_ci(few) == (lo, hi)  # seeded: reproducible
