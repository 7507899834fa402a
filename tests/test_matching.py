"""Confidence calibration and the assignment rules (exclusive vs not, threshold): pure functions."""
from __future__ import annotations

import numpy as np

from bot.speech.matching import CAL_MIDPOINT, RECOMMENDED_THRESHOLD, assign, confidence, similarity_matrix


def test_confidence_is_calibrated_and_monotone():
    assert confidence(CAL_MIDPOINT) == 50.0
    s = np.linspace(-1, 1, 41)
    c = confidence(s)
    assert np.all(np.diff(c) >= 0) and c.min() >= 0 and c.max() <= 100
    assert confidence(0.5) < 5 and confidence(0.9) > 95


def test_the_recommended_threshold_names_a_near_voice_and_leaves_a_far_one_unknown():
    """At the engine's recommended threshold, a speaker as similar to a voiceprint as the same person's voice
    (0.9) is named, one as similar as another person's (0.5) is not; at 50 the calibration midpoint decides."""
    assert assign(confidence(np.array([[0.9], [0.5]])), RECOMMENDED_THRESHOLD, exclusive=False).matches == [0, None]
    near_midpoint = confidence(np.array([[CAL_MIDPOINT + 0.01], [CAL_MIDPOINT - 0.01]]))
    assert assign(near_midpoint, threshold=50, exclusive=False).matches == [0, None]


def test_similarity_of_normalised_rows():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert np.allclose(similarity_matrix(a, a), np.eye(2))
    assert similarity_matrix(np.zeros((0, 2)), a).shape == (0, 2)


CONF = np.array([
    [90.0, 80.0, 10.0],  # speaker 0 looks like A (and a bit like B)
    [85.0, 20.0, 15.0],  # speaker 1 also looks most like A
    [5.0, 8.0, 12.0],  # speaker 2 is nobody enrolled
])


def test_exclusive_is_an_optimal_one_to_one_assignment():
    m = assign(CONF, threshold=0, exclusive=True).matches
    # greedy would give A to speaker 0 (90) and leave speaker 1 with B (20): total 110;
    # the optimum gives speaker 0 B (80) and speaker 1 A (85): total 165
    assert m[0] == 1 and m[1] == 0
    assert m[2] == 2  # threshold 0 always takes a match, as pyannoteAI
    assert len({x for x in m if x is not None}) == len([x for x in m if x is not None])


def test_not_exclusive_takes_each_best():
    assert assign(CONF, threshold=0, exclusive=False).matches == [0, 0, 2]


def test_threshold_leaves_unknown_speakers_unnamed():
    assert assign(CONF, threshold=50, exclusive=True).matches == [1, 0, None]
    assert assign(CONF, threshold=50, exclusive=False).matches == [0, 0, None]
    assert assign(CONF, threshold=95, exclusive=True).matches == [None, None, None]


def test_more_speakers_than_voiceprints():
    conf = np.array([[70.0], [90.0], [60.0]])
    assert assign(conf, 0, exclusive=True).matches == [None, 0, None]
    assert assign(conf, 65, exclusive=False).matches == [0, 0, None]


def test_empty_inputs():
    assert assign(np.zeros((0, 3)), 0).matches == []
    assert assign(np.zeros((2, 0)), 0).matches == [None, None]


def test_near_matches_take_the_band_under_the_threshold_once_per_person():
    from bot.speech.matching import near_matches

    nan = np.nan
    best = np.array([[90.0, 20.0, 10.0],   # named person 0
                     [30.0, 68.0, 12.0],   # in the band for person 1
                     [20.0, 62.0, 11.0],   # also person 1, lower: person 1 is asked about one speaker only
                     [85.0, 15.0, 55.0],   # reached the threshold (for person 0, named elsewhere): no question
                     [nan, 10.0, 40.0]])   # nobody close
    chosen = [0, None, None, None, None]
    assert near_matches(best, chosen, 50, 75) == [None, 1, None, None, None]
    assert near_matches(best, chosen, 0, 75) == [None] * 5  # off
    assert near_matches(best, chosen, 75, 75) == [None] * 5  # a floor not under the threshold is off
    assert near_matches(best, chosen, 70, 75) == [None] * 5  # 68 is under the floor


def test_a_near_match_fitting_two_people_in_the_band_is_not_asked_unless_told():
    from bot.speech.matching import near_matches

    best = np.array([[66.0, 58.0], [10.0, 12.0]])
    assert near_matches(best, [None, None], 50, 75) == [None, None]
    assert near_matches(best, [None, None], 50, 75, unambiguous_only=False) == [0, None]
    assert near_matches(best, [None, None], 60, 75) == [0, None]  # the second person is under the floor
