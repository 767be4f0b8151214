"""The order in which a video's tracked fits are run: chains fitted side by side.

A tracked fit continues the same person's fit in the frame before
(``openhmr.fit.fit``'s ``previous``), so fitting a run of frames is
sequential. One fit on a batch of people costs little more than on one
person on a CPU (the optimiser's per-step overhead dominates), so a long run
is cut into *chains* of consecutive frames that advance side by side: at
each step every chain fits its next frame, in one batch. Within a chain
every frame continues the frame before, exactly as when the frames go one
at a time. The first chain's first frame starts afresh (or continues the
previous call's fit); every other chain's first frame continues that one,
a step later. Starting those chains afresh instead would give each its own
error, held along the chain and jumping at its seams, which smoothing over
the clip cannot tell from movement.

A run of n frames is cut into ``n // min_length`` chains (at least one) of
near-equal length. How many frames a call holds sets how many chains run
side by side: the demo passes ``--batch-size`` × ``min_length`` frames of a
video at a time, so ``--batch-size`` 1 fits one frame after another.
"""

from __future__ import annotations

from collections.abc import Sequence

#: A step's entries: (row to fit, row whose fit it continues; None where the
#: row starts a chain).
Step = list[tuple[int, int | None]]


def consecutive_runs(frames: Sequence[int]) -> list[list[int]]:
    """Positions in ``frames`` (increasing frame indices) grouped into runs of
    consecutive frames: [3, 4, 5, 8, 9] → [[0, 1, 2], [3, 4]]."""
    runs: list[list[int]] = []
    for k, frame in enumerate(frames):
        if k and frame == frames[k - 1] + 1:
            runs[-1].append(k)
        else:
            if k and frame <= frames[k - 1]:
                raise ValueError(f"frames must increase, got {frames[k - 1]} then {frame}")
            runs.append([k])
    return runs


def split_run(n: int, min_length: int) -> list[range]:
    """A run of ``n`` frames cut into ``n // min_length`` chains (at least
    one) of near-equal length, in order, the longer ones first:
    split_run(40, 16) → [range(0, 20), range(20, 40)]."""
    if min_length < 1:
        raise ValueError(f"min_length must be positive, got {min_length}")
    count = max(1, n // min_length)
    base, extra = divmod(n, count)
    chains, start = [], 0
    for c in range(count):
        length = base + (c < extra)
        chains.append(range(start, start + length))
        start += length
    return chains


def chain_steps(tracks: Sequence[Sequence[tuple[int, int]]], min_length: int) -> list[Step]:
    """The steps that fit every row of every track.

    Args:
        tracks: per person followed, its rows as (row, frame index), frames
            increasing; rows are the caller's indices, unique over tracks.
        min_length: frames per chain at least (unless the run is shorter).
    Returns:
        Steps in order; each lists (row, the row it continues or None). A row
        continued by another is always in an earlier step. Every run of
        consecutive frames in every track is split with :func:`split_run`;
        its first chain starts at step 0 (None: afresh), the others at step
        1, continuing the first chain's first row.
    """
    # chain → (rows, the row its first row continues, the step it starts at)
    chains: list[tuple[list[int], int | None, int]] = []
    for track in tracks:
        rows = [row for row, _ in track]
        for run in consecutive_runs([frame for _, frame in track]):
            parts = [[rows[run[k]] for k in part] for part in split_run(len(run), min_length)]
            chains.append((parts[0], None, 0))
            chains += [(part, parts[0][0], 1) for part in parts[1:]]
    steps: list[Step] = []
    for s in range(max((len(c) + start for c, _, start in chains), default=0)):
        step: Step = []
        for c, head_before, start in chains:
            k = s - start
            if 0 <= k < len(c):
                step.append((c[k], c[k - 1] if k else head_before))
        steps.append(step)
    return steps
