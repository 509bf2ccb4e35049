import numpy as np

from keras_ssd.matching import bipartite_match, match_anchors


def test_every_object_gets_an_anchor_even_below_threshold():
    overlaps = np.array([[0.1, 0.3, 0.2, 0.0]])
    m = match_anchors(overlaps, 0.5)
    assert m.tolist() == [-1, 0, -1, -1]


def test_two_objects_competing_for_one_anchor_get_different_anchors():
    # Both objects like prior 1 best; object 0 likes it more, so object 1
    # takes its second choice (prior 2) rather than losing its match.
    overlaps = np.array([[0.1, 0.45, 0.2, 0.0], [0.0, 0.4, 0.35, 0.3]])
    assert bipartite_match(overlaps).tolist() == [1, 2]
    m = match_anchors(overlaps, 0.5)
    assert m.tolist() == [-1, 0, 1, -1]


def test_competition_is_decided_by_global_best_pair():
    # Object 1 has the highest overlap on prior 0, so it keeps prior 0 and
    # object 0 moves to prior 1, whatever the order of the objects.
    overlaps = np.array([[0.6, 0.5, 0.0], [0.9, 0.1, 0.0]])
    assert bipartite_match(overlaps).tolist() == [1, 0]
    assert bipartite_match(overlaps[::-1]).tolist() == [0, 1]


def test_ties_resolve_to_lower_indices():
    overlaps = np.array([[0.7, 0.7], [0.7, 0.7]])
    assert bipartite_match(overlaps).tolist() == [0, 1]
    m = match_anchors(np.array([[0.6, 0.0, 0.6], [0.6, 0.0, 0.2]]), 0.5)
    # Object 0 takes prior 0 (first of the tied pairs); object 1's best free
    # prior is then prior 2, and the forced match beats object 0's 0.6 there.
    assert m.tolist() == [0, -1, 1]


def test_threshold_stage_assigns_best_object():
    overlaps = np.array([[0.9, 0.55, 0.2], [0.1, 0.6, 0.49]])
    m = match_anchors(overlaps, 0.5)
    assert m.tolist() == [0, 1, -1]


def test_object_overlapping_nothing_stays_unmatched():
    overlaps = np.array([[0.0, 0.0, 0.0], [0.2, 0.7, 0.0]])
    assert bipartite_match(overlaps).tolist() == [-1, 1]
    assert match_anchors(overlaps).tolist() == [-1, 1, -1]


def test_no_objects_is_all_background():
    assert match_anchors(np.zeros((0, 5))).tolist() == [-1] * 5


def test_greedy_general_case_matches_bruteforce_greedy():
    rng = np.random.default_rng(3)
    for _ in range(50):
        o = rng.uniform(0, 1, (6, 8)) * (rng.uniform(0, 1, (6, 8)) > 0.3)
        o[:, rng.integers(0, 8)] += 0.5  # make objects compete
        got = bipartite_match(o)
        work = o.copy()
        want = np.full(6, -1)
        for _ in range(6):
            g, p = np.unravel_index(np.argmax(work), work.shape)
            if work[g, p] <= 1e-6:
                break
            want[g] = p
            work[g, :] = -1
            work[:, p] = -1
        assert got.tolist() == want.tolist()
        assert len(set(got[got >= 0].tolist())) == (got >= 0).sum()
