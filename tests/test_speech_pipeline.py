"""The pure pieces of the v2 diarization pipeline (bot.speech) on synthetic arrays: no models, no audio files."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from bot.speech import clustering, reconstruction, segmentation
from bot.speech.embedding import fbank_to_segmentation_frames, l2, speaker_masks
from bot.speech.segmentation import FRAME_STEP, FRAMES, WINDOW_SAMPLES


def test_powerset_mapping_is_silence_singles_then_pairs():
    m = segmentation.powerset_mapping()
    assert m.tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]]


def test_powerset_to_multilabel_takes_the_most_likely_class():
    logp = np.full((4, 7), -10.0)
    logp[0, 0] = 0  # silence
    logp[1, 2] = 0  # speaker 2 alone
    logp[2, 6] = 0  # speakers 2 and 3 together: overlap
    logp[3, 4] = -0.1
    logp[3, 1] = -0.2  # the pair {1, 2} wins over speaker 1 alone
    assert segmentation.powerset_to_multilabel(logp).tolist() == [[0, 0, 0], [0, 1, 0], [0, 1, 1], [1, 1, 0]]


@pytest.mark.parametrize("n", [1, 5000, WINDOW_SAMPLES, WINDOW_SAMPLES + 1, 3 * WINDOW_SAMPLES + 777])
def test_sliding_windows_stream_matches_the_offline_grid(n):
    x = np.arange(n, dtype=np.float32)
    step = 40000
    blocks = (x[i:i + 12345] for i in range(0, n, 12345))
    got = list(segmentation.sliding_windows(blocks, step))
    assert [s for s, _ in got] == segmentation.chunk_starts(n, step)
    for start, w in got:
        assert len(w) == WINDOW_SAMPLES
        real = x[start:start + WINDOW_SAMPLES]
        assert np.array_equal(w[: len(real)], real) and not w[len(real):].any()
    assert got[-1][0] + WINDOW_SAMPLES >= n


def test_speaker_masks_prefer_clean_frames_when_enough():
    act = np.zeros((100, 3), np.uint8)
    act[:60, 0] = 1
    act[50:70, 1] = 1  # overlaps speaker 0 on 10 frames, 10 clean frames of its own
    masks = speaker_masks(act, min_clean_frames=20)
    assert masks[:, 0].sum() == 50 and not masks[50:60, 0].any()  # 50 clean frames: overlap left out
    assert masks[:, 1].sum() == 20  # only 10 clean: all its frames kept
    assert not masks[:, 2].any()


def test_fbank_frames_map_onto_segmentation_frames():
    idx = fbank_to_segmentation_frames(998)
    assert idx[0] == 0 and idx[-1] == FRAMES - 1 and np.all(np.diff(idx) >= 0)


def test_one_fbank_of_a_span_slices_into_each_windows_fbank():
    """The streaming pass computes the fbank of a batch's span once and slices each window from it: the same
    features (after each window's mean normalisation) as the fbank of every window on its own."""
    from bot.speech.fbank import fbank_batch, log_mel

    rng = np.random.default_rng(0)
    step = 40000
    span = (0.1 * rng.normal(size=3 * step + WINDOW_SAMPLES)).astype(np.float32)
    whole = log_mel(span)
    for start in range(0, 4 * step, step):
        own, _ = fbank_batch(span, [(start, start + WINDOW_SAMPLES)])
        rows = whole[start // 160:start // 160 + own.shape[1]]
        assert own.shape[1] == 998 and rows.shape[0] == 998
        assert np.allclose((rows - rows.mean(0)).numpy(), own[0].numpy(), atol=1e-4)


def _blobs(rng, centres: int, per: int, spread: float = 0.15, dim: int = 32):
    c = l2(rng.normal(size=(centres, dim)))
    x = np.concatenate([l2(c[k] + spread * rng.normal(size=(per, dim)) / np.sqrt(dim)) for k in range(centres)])
    return x, np.repeat(np.arange(centres), per)


def test_clustering_finds_the_speakers_and_honours_constraints():
    rng = np.random.default_rng(0)
    x, _ = _blobs(rng, 4, 30)
    assert len(clustering.cluster(x, threshold=0.7, min_cluster_size=12)) == 4
    assert len(clustering.cluster(x, threshold=0.7, min_cluster_size=12, num=2)) == 2
    assert len(clustering.cluster(x, threshold=0.7, min_cluster_size=12, max_n=3)) == 3
    assert len(clustering.cluster(x, threshold=5.0, min_cluster_size=12, min_n=3)) == 3  # threshold merges all
    assert len(clustering.cluster(x[:1], threshold=0.7, min_cluster_size=12)) == 1
    assert len(clustering.cluster(x[:0], threshold=0.7, min_cluster_size=12)) == 0


def test_short_meeting_keeps_four_speakers():
    """Four people in 30 s give only a few embeddings each: the minimum cluster size shrinks with them."""
    rng = np.random.default_rng(1)
    x, _ = _blobs(rng, 4, 4)
    assert len(clustering.cluster(x, threshold=0.7, min_cluster_size=12)) == 4


def test_small_clusters_join_a_large_one():
    rng = np.random.default_rng(2)
    x, _ = _blobs(rng, 2, 40)
    outlier = l2(rng.normal(size=(2, 32)))
    cents = clustering.cluster(np.concatenate([x, outlier]), threshold=0.7, min_cluster_size=12)
    assert len(cents) == 2


def test_assignment_gives_two_local_speakers_of_a_window_two_speakers():
    cents = l2(np.array([[1.0, 0.0], [0.0, 1.0]]))
    emb = np.array([[[1.0, 0.1], [0.9, 0.2], [np.nan, np.nan]]])  # both resemble speaker 0
    mapping = clustering.assign(l2(emb), cents)
    assert sorted(mapping[0, :2].tolist()) == [0, 1] and mapping[0, 2] == -1


def test_runs_of_one_local_speaker_may_be_two_people_but_two_local_speakers_never_one():
    cents = l2(np.array([[1.0, 0.0], [0.0, 1.0]]))
    emb = l2(np.array([[[1.0, 0.1], [0.1, 1.0], [0.9, 0.2]]]))  # runs of local speakers 0, 0 and 1
    mapping = clustering.assign(emb, cents, np.array([[0, 0, 1]]))
    assert mapping[0].tolist() == [0, 1, -1]  # run 2 resembles speaker 0, held by the other local speaker


def test_speaker_runs_cut_at_pauses_and_fit_the_slots():
    act = np.zeros((100, 3), np.uint8)
    act[0:10, 0] = act[13:20, 0] = act[40:60, 0] = 1  # pauses of 3 and 20 frames
    act[50:70, 1] = 1
    runs, parents = segmentation.speaker_runs(act, pause_frames=5, slots=4)
    assert parents.tolist() == [0, 0, 1, -1]
    assert runs[:, 0].sum() == 17 and runs[40:60, 1].all() and runs[:, 2].sum() == 20 and not runs[:, 3].any()
    assert (runs.sum(1) == act.sum(1)).all()  # nothing lost, nothing doubled
    runs, parents = segmentation.speaker_runs(act, pause_frames=2, slots=3)  # 4 runs, 3 slots: shortest pause joined
    assert parents.tolist() == [0, 0, 1] and runs[0:20, 0].sum() == 17 and runs[40:60, 1].all()


def test_a_run_too_short_to_embed_takes_its_local_speakers_longest_run():
    mapping = np.array([[2, -1, 1, -1, -1]])
    parents = np.array([[0, 0, 0, 1, -1]])
    frames = np.array([[10, 3, 50, 4, 0]])
    assert clustering.inherit(mapping, parents, frames).tolist() == [[2, 1, 1, -1, -1]]


def test_reconstruction_keeps_overlap_and_exclusive_keeps_one():
    duration = 10.0
    agg = reconstruction.Aggregator(duration, 2)
    local = np.zeros((FRAMES, 3), np.uint8)
    local[: FRAMES // 2, 0] = 1
    local[FRAMES // 3:, 1] = 1  # overlap in the middle third
    agg.add(0.0, local, np.array([1, 0, -1]))
    count = agg.count()
    binary = reconstruction.top_speakers(agg.activity, count)
    turns = reconstruction.to_segments(binary, duration)
    assert [k for k, _, _ in turns] == [1, 0]
    (_, _s1, e1), (_, s0, _e0) = turns
    assert s0 < e1  # overlapping turns
    assert abs(e1 - FRAMES // 2 * FRAME_STEP) < 0.05 and abs(s0 - FRAMES // 3 * FRAME_STEP) < 0.05
    exclusive = reconstruction.top_speakers(agg.activity, np.minimum(count, 1))
    assert exclusive.sum(1).max() == 1
    only = reconstruction.to_segments(exclusive, duration)
    assert all(a[2] <= b[1] for a, b in itertools.pairwise(only))


def test_to_segments_fills_short_gaps_and_drops_short_turns():
    b = np.zeros((200, 1), np.uint8)
    b[10:50, 0] = 1
    b[53:100, 0] = 1  # a 3-frame gap (~50 ms)
    b[150:152, 0] = 1  # a 2-frame blip
    turns = reconstruction.to_segments(b, 10.0, min_off=0.1, min_on=0.1)
    assert len(turns) == 1
    assert abs(turns[0][1] - reconstruction.frame_time(10)) <= FRAME_STEP
    assert abs(turns[0][2] - reconstruction.frame_time(99)) <= FRAME_STEP


# ---- v3 (bot.speech.v3): the stages after the streaming pass -------------------------------------------


def test_v3_speech_where_silence_is_unlikely_enough_even_when_most_likely():
    from bot.speech.v3 import frames

    probs = np.zeros((1, 3, 7), np.float32)
    probs[0, 0] = [0.55, 0.3, 0.05, 0.0, 0.1, 0.0, 0.0]  # silence most likely, but 1 − P(silence) = 0.45
    probs[0, 1] = [0.8, 0.1, 0.1, 0.0, 0.0, 0.0, 0.0]  # 0.2: silence
    probs[0, 2] = [0.1, 0.2, 0.0, 0.0, 0.7, 0.0, 0.0]  # speakers 1 and 2 together
    assert frames.local_activity(probs, 0.4, 0.5)[0].tolist() == [[1, 0, 0], [0, 0, 0], [1, 1, 0]]
    assert frames.local_activity(probs, 0.5, 0.5)[0].tolist() == [[0, 0, 0], [0, 0, 0], [1, 1, 0]]
    assert frames.local_activity(probs, 0.4, 0.1)[0].tolist() == [[1, 1, 0], [0, 0, 0], [1, 1, 0]]  # P(two) 0.1


def test_v3_count_is_averaged_over_the_windows_covering_a_frame():
    from bot.speech.v3 import frames

    grid = frames.Frames(10.0, 2)
    two = np.zeros((FRAMES, 3), np.uint8)
    two[:, :2] = 1
    one = two.copy()
    one[:, 1] = 0
    for local in (two, two, one):  # averaged: 5/3 speakers
        grid.add_count(0.0, local)
    assert grid.count(0.5, 1.5)[:FRAMES].tolist() == [2] * FRAMES
    assert grid.count(0.5, 1.8)[:FRAMES].tolist() == [1] * FRAMES
    assert grid.count(0.5, 1.5)[FRAMES + 5] == 0  # not covered: silence


def test_v3_frames_of_a_local_speaker_go_to_its_nearest_run():
    from bot.speech.v3 import frames

    runs = np.zeros((1, 100, 3), np.uint8)
    runs[0, 10:20, 0] = runs[0, 60:80, 1] = runs[0, 30:40, 2] = 1
    parents = np.array([[0, 0, 1]])
    local = np.zeros((1, 100, 3), np.uint8)
    local[0, 5:25, 0] = local[0, 45:85, 0] = local[0, 30:40, 1] = 1
    slots = frames.slot_activity(local, runs, parents)
    assert slots[0, 5:25, 0].all() and slots[0, 45:85, 1].all() and slots[0, 30:40, 2].all()
    assert slots.sum() == local.sum()


def test_v3_a_run_too_short_to_embed_takes_the_speaker_heard_around_it_but_not_one_held_in_its_window():
    from bot.speech.v3 import frames

    grid = frames.Frames(20.0, 3)
    grid.activity[100:200, 1] = 3  # speaker 1 all around, speaker 2 a little
    grid.activity[100:200, 2] = 1
    grid.covered[:] = 3
    slots = np.zeros((1, FRAMES, 3), np.uint8)
    slots[0, 140:150, 0] = slots[0, 100:200, 1] = 1
    starts = np.array([0.0])
    mapping = np.array([[-1, 1, -1]])
    assert frames.fill(starts, slots, mapping, np.array([[0, 1, -1]]), grid, 20).tolist() == [[2, 1, -1]]
    mapping = np.array([[-1, 0, -1]])  # the other local speaker is speaker 0: the short run joins speaker 1
    assert frames.fill(starts, slots, mapping, np.array([[0, 1, -1]]), grid, 20).tolist() == [[1, 0, -1]]


def _local(embeddings: np.ndarray, parents: np.ndarray, seconds: float = 3.0):
    """A LocalResult holding only what counting and anchors read: embeddings, parents, speech per run."""
    from bot.speech.diarization import LocalResult

    w, s = parents.shape
    return LocalResult(starts=np.arange(w) * 2.5, activity=np.zeros((w, FRAMES, s), np.uint8),
                       embeddings=embeddings.astype(np.float32),
                       speech_frames=np.where(parents >= 0, round(seconds / FRAME_STEP), 0),
                       parents=parents.astype(np.int8), duration=w * 2.5 + 7.5, peak=0.5)


def _voices(rng, n: int, dim: int = 192, spread: float = 0.3):
    """n voices and a sampler of noisy runs of each (cosine about 0.9 to their voice)."""
    v = l2(rng.normal(size=(n, dim)))
    return v, lambda k, m: l2(v[k] + spread * rng.normal(size=(m, dim)) / np.sqrt(dim) * 3)


def test_v3_conflicts_count_windows_where_two_speakers_are_two_local_speakers():
    from bot.speech.v3.counting import conflicts

    mapping = np.array([[0, 1, -1], [0, 0, 2], [1, 2, -1]])
    parents = np.array([[0, 1, -1], [0, 0, 1], [0, 0, -1]])  # window 2: speakers 1 and 2 are one local speaker
    both, held = conflicts(mapping, parents, 3)
    assert held.tolist() == [2, 2, 2]
    assert both[0, 1] == 1 and both[0, 2] == 1 and both[1, 2] == 0 and both[1, 0] == 1


def test_v3_one_voice_split_in_two_clusters_is_merged_but_two_people_heard_together_are_not():
    from bot.speech.v3 import counting

    rng = np.random.default_rng(3)
    _, runs = _voices(rng, 2)
    # Voice 0 in two groups (windows 0-9 and 10-19) that clustering kept apart; voice 1 beside it in every window.
    emb = np.full((20, 3, 192), np.nan)
    emb[:, 0], emb[:, 1] = runs(0, 20), runs(1, 20)
    parents = np.tile([0, 1, -1], (20, 1))
    local = _local(emb, parents)
    cents = np.stack([l2(emb[:10, 0].mean(0)), l2(emb[10:, 0].mean(0)), l2(emb[:, 1].mean(0))])
    mapping = clustering.assign(local.embeddings, cents, local.parents)
    p = counting.CountingParams()
    flat, train = emb.reshape(-1, 192), np.isfinite(emb.reshape(-1, 192)[:, 0])
    merged, _ = counting._merge(local, flat, train, cents, mapping, p, None, None, None)
    assert len(merged) == 2
    assert len(counting._merge(local, flat, train, cents, mapping, p, 3, None, None)[0]) == 3  # numSpeakers=3


def test_v3_anchors_split_a_speaker_whose_runs_two_voiceprints_claim_and_merge_two_that_one_claims():
    from bot.speech.v3.anchors import AnchorParams, anchored

    rng = np.random.default_rng(4)
    voices, runs = _voices(rng, 4)
    emb = np.full((30, 2, 192), np.nan)
    emb[:15, 0], emb[15:, 0] = runs(0, 15), runs(1, 15)  # people 0 and 1 take turns: one local speaker each time
    emb[:, 1] = runs(2, 30)
    parents = np.tile([0, 1], (30, 1))
    local = _local(emb, parents)
    train = np.isfinite(emb.reshape(-1, 192)[:, 0])
    cents = np.stack([l2(emb[:, 0].mean(0)), l2(emb[:, 1].mean(0))])  # 0 and 1 clustered as one speaker
    mapping = clustering.assign(local.embeddings, cents, local.parents)
    p = AnchorParams()
    new, m = anchored(local, cents, mapping, train, voices[[0, 1]], p)
    assert len(new) == 3 and len({*m[:15, 0]}) == 1 and m[0, 0] != m[20, 0]
    # An absent person's voiceprint (voice 3) changes nothing; nor does a max speakers of 2.
    assert len(anchored(local, cents, mapping, train, voices[[3]], p)[0]) == 2
    assert len(anchored(local, cents, mapping, train, voices[[0, 1]], p, max_n=2)[0]) == 2
    # Person 2 split into two speakers that both match their voiceprint: one again.
    halves = np.stack([l2(emb[:15, 1].mean(0)), l2(emb[15:, 1].mean(0)), l2(emb[:, 0].mean(0))])
    split = clustering.assign(local.embeddings, halves, np.tile([1, 0], (30, 1)))
    assert len(anchored(local, halves, split, train, voices[[2]], p)[0]) == 2


def test_v3_counting_honours_the_speaker_count_hints():
    from bot.speech.v3 import counting

    rng = np.random.default_rng(5)
    _, runs = _voices(rng, 3, spread=0.1)
    emb = np.full((30, 3, 192), np.nan)
    for k in range(3):
        emb[:, k] = runs(k, 30)
    local = _local(emb, np.tile([0, 1, 2], (30, 1)))
    p = counting.CountingParams()
    assert len(counting.speakers(local, p)[0]) == 3
    assert len(counting.speakers(local, p, num=2)[0]) == 2
    assert len(counting.speakers(local, p, max_n=2)[0]) == 2
    assert len(counting.speakers(local, p, min_n=4)[0]) == 4


def test_v3_a_speaker_with_few_seconds_stays_only_if_its_voice_is_clearly_its_own():
    import dataclasses

    from bot.speech.v3 import counting

    rng = np.random.default_rng(6)
    voices, runs = _voices(rng, 3)
    u = rng.normal(size=192)
    u = l2(u - (u @ voices[0]) * voices[0])  # orthogonal to voice 0
    echo = l2(0.62 * voices[0] + 0.78 * u)  # voice 0 heard differently: cosine 0.62, under the usual merge 0.7
    emb = np.full((24, 2, 192), np.nan)
    emb[:20, 0], emb[:20, 1] = runs(0, 20), runs(1, 20)
    emb[20:22, 0] = echo
    emb[22:, 0] = runs(2, 2)  # a third person who says little
    parents = np.tile([0, 1], (24, 1))
    parents[20:, 1] = -1
    local = _local(emb, parents)
    local.speech_frames[20:, 0] = round(1.0 / FRAME_STEP)  # 2 s each for the echo and the third person
    flat = emb.reshape(-1, 192)
    train = np.isfinite(flat[:, 0])
    cents = np.stack([l2(emb[:20, 0].mean(0)), l2(emb[:20, 1].mean(0)), echo, l2(emb[22:, 0].mean(0))])
    mapping = clustering.assign(local.embeddings, cents, local.parents)
    p = counting.CountingParams()
    kept, m = counting._merge(local, flat, train, cents, mapping, p, None, None, None)
    assert len(kept) == 3 and m[20, 0] == m[0, 0] and m[22, 0] not in (m[0, 0], m[0, 1])
    off = dataclasses.replace(p, small_seconds=0.0)
    assert len(counting._merge(local, flat, train, cents, mapping, off, None, None, None)[0]) == 4
