"""The order of a video's tracked fits: chains of consecutive frames fitted side by side."""

from __future__ import annotations

import pytest

from openhmr.tracking import chain_steps, consecutive_runs, split_run


@pytest.mark.parametrize("n", [1, 5, 15, 16, 31, 32, 40, 127, 128, 130, 1000])
def test_a_run_is_cut_into_contiguous_chains_of_at_least_the_minimum(n):
    chains = split_run(n, 16)
    assert len(chains) == max(1, n // 16)
    assert [i for c in chains for i in c] == list(range(n))  # in order, each frame once
    lengths = [len(c) for c in chains]
    assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)
    if n >= 16:
        assert min(lengths) >= 16


def test_runs_break_at_gaps():
    assert consecutive_runs([3, 4, 5, 8, 9, 11]) == [[0, 1, 2], [3, 4], [5]]
    assert consecutive_runs([]) == []
    with pytest.raises(ValueError, match="frames must increase"):
        consecutive_runs([2, 2])


def test_every_row_continues_its_frame_before_except_chain_heads():
    """Two people: one seen in frames 0-39 (two chains of 20), one in 0-9 and
    12-49 (a run of 10 alone, and a run of 38 in two chains). Only each
    run's first frame starts afresh; a later chain's first frame continues
    the run's first frame, a step later."""
    tracks = [[(100 + f, f) for f in range(40)],
              [(200 + f, f) for f in list(range(10)) + list(range(12, 50))]]
    frame_of = {row: f for track in tracks for row, f in track}
    person_of = {row: k for k, track in enumerate(tracks) for row, _ in track}
    steps = chain_steps(tracks, 16, passes=1)
    seen: list[int] = []
    leaps = []
    for step in steps:
        for row, before in step:
            if before is not None:
                assert before in seen  # continued from an earlier step
                assert person_of[before] == person_of[row]
                if frame_of[before] != frame_of[row] - 1:
                    leaps.append((person_of[row], frame_of[before], frame_of[row]))
            seen.append(row)
    assert sorted(seen) == sorted(frame_of)  # every row once
    afresh = sorted((person_of[row], frame_of[row]) for step in steps for row, before in step if before is None)
    assert afresh == [(0, 0), (1, 0), (1, 12)]
    assert sorted(leaps) == [(0, 0, 20), (1, 12, 31)]
    assert len(steps) == 21 and len(steps[0]) == 3 and len(steps[1]) == 5


def test_the_second_pass_refits_later_chains_from_the_frame_before():
    """With two passes, the first pass's steps come unchanged, then every
    chain but a run's first is fitted again, side by side: its first frame
    continuing the previous chain's last frame, each later one the frame
    before. 52 frames: chains 0-17, 18-34, 35-51; 64 frames: four of 16."""
    for n, chains in ((52, [range(0, 18), range(18, 35), range(35, 52)]),
                      (64, [range(k, k + 16) for k in range(0, 64, 16)])):
        track = [[(1000 + f, f) for f in range(n)]]
        first = chain_steps(track, 16, passes=1)
        steps = chain_steps(track, 16, passes=2)
        assert steps[:len(first)] == first
        again = steps[len(first):]
        assert len(again) == max(len(c) for c in chains[1:])
        refits = sorted((row - 1000, None if before is None else before - 1000) for step in again
                        for row, before in step)
        assert refits == sorted((f, f - 1) for c in chains[1:] for f in c)  # every later frame, from the one before
        # side by side: the k-th step refits the k-th frame of every later chain
        assert [sorted(row - 1000 for row, _ in step) for step in again[:2]] == \
            [[c[k] for c in chains[1:]] for k in range(2)]
    with pytest.raises(ValueError, match="passes"):
        chain_steps(track, 16, passes=3)


@pytest.mark.parametrize("n", [32, 40, 47])
def test_two_chains_are_one_under_two_passes(n):
    """Refitting the second of two chains from the first one's end is one
    frame after another again, at more steps: such a run is one chain."""
    track = [[(f, f) for f in range(n)]]
    assert len(chain_steps(track, 16, passes=1)) == n // 2 + 1
    assert chain_steps(track, 16, passes=2) == [[(0, None)]] + [[(f, f - 1)] for f in range(1, n)]


def test_width_one_is_one_frame_after_another():
    for passes in (1, 2):  # one chain: nothing to refit
        steps = chain_steps([[(f, f) for f in range(15)]], 16, passes)
        assert steps == [[(0, None)]] + [[(f, f - 1)] for f in range(1, 15)]


def test_passes_can_differ_per_track():
    """One pass for the first person (fitted with 3D landmarks, say), two for
    the second: only the second one's later chains are refitted."""
    tracks = [[(f, f) for f in range(64)], [(100 + f, f) for f in range(64)]]
    steps = chain_steps(tracks, 16, passes=[1, 2])
    rows = [row for step in steps for row, _ in step]
    assert sorted(r for r in rows if r < 100) == list(range(64))
    assert sorted(r for r in rows if r >= 100) == sorted(list(range(100, 164)) + list(range(116, 164)))
    with pytest.raises(ValueError, match="one per track"):
        chain_steps(tracks, 16, passes=[2])
