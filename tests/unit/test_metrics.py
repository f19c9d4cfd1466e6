"""Ranking metrics against hand-computed values."""

import math

import numpy as np
import pytest
from siit.metrics import beam_validity, first_hit, ranking_metrics


def test_first_hit_takes_the_first_occurrence():
    ranked = np.array([[3, 1, 2], [5, 5, 4], [7, 8, 9]])
    assert first_hit(ranked, np.array([2, 5, 1])).tolist() == [2, 0, -1]


def test_recall_and_ndcg_by_hand():
    ranks = np.array([0, 4, 9, -1])
    m = ranking_metrics(ranks, recall_ks=(1, 5, 10), ndcg_ks=(5, 10))
    assert m["recall@1"] == 0.25
    assert m["recall@5"] == 0.5
    assert m["recall@10"] == 0.75
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(6)) / 4)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(6) + 1 / math.log2(11)) / 4)


def test_beam_validity_counts_invalid_and_repeated_beams():
    items = np.array([[1, 2, -1, 2], [3, 4, 5, 6]])
    invalid, repeated = beam_validity(items)
    assert invalid == 1 / 8 and repeated == 1 / 8
