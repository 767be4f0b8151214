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

That leap to a far frame can still land a chain in another fit than one
frame after another would (from 2D alone, another depth for a limb), so a
second pass refits every chain but the first, again side by side: this
time each chain's first frame continues the first pass's fit of the frame
before it (the previous chain's last), and each refit replaces the first.
On synthetic 128-frame videos this brings the chains' error back to that of
fitting one frame after another (2D only, brisk movement: 36.5 mm with one
pass, 32.6 with two, 32.5 one after another; README), at about twice the
steps of one pass (33 for 128 frames, against 128). Two chains would take
as many steps as one frame after another, so such a run (32 to 47 frames at
``min_length`` 16) is one chain. With 3D landmarks the leap seldom lands
elsewhere (9.8 mm with one pass, 9.6 with two), so the demo's fits with
them take one pass.

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


def chain_steps(tracks: Sequence[Sequence[tuple[int, int]]], min_length: int,
                passes: int | Sequence[int] = 2) -> list[Step]:
    """The steps that fit every row of every track.

    Args:
        tracks: per person followed, its rows as (row, frame index), frames
            increasing; rows are the caller's indices, unique over tracks.
        min_length: frames per chain at least (unless the run is shorter).
        passes: 1, or 2 to refit the later chains (see the module's text);
            one number for every track, or one per track.
    Returns:
        Steps in order; each lists (row, the row whose current fit it
        continues, or None: afresh). A row continued by another is always in
        an earlier step. Every run of consecutive frames in every track is
        split with :func:`split_run`; its first chain starts at step 0, the
        others at step 1, continuing the first chain's first row. With two
        passes, the rows of the later chains come again in the steps after
        the first pass's, each chain's first row continuing the previous
        chain's last row; a row's second fit replaces its first. A run that
        would be two chains is one under two passes (the second pass would
        refit the second chain from the first one's end: one frame after
        another, at more steps).
    """
    per_track = [passes] * len(tracks) if isinstance(passes, int) else list(passes)
    if len(per_track) != len(tracks) or any(p not in (1, 2) for p in per_track):
        raise ValueError(f"passes must be 1 or 2, for all tracks or one per track; got {passes}")
    # chain → (rows, the row its first row continues, the step it starts at)
    chains: list[tuple[list[int], int | None, int]] = []
    again: list[tuple[list[int], int | None, int]] = []  # the second pass's
    for track, track_passes in zip(tracks, per_track):
        rows = [row for row, _ in track]
        for run in consecutive_runs([frame for _, frame in track]):
            cut = split_run(len(run), min_length)
            if track_passes == 2 and len(cut) == 2:
                # the second pass would refit the second chain from the first's
                # end: one frame after another again, at more steps
                cut = [range(len(run))]
            parts = [[rows[run[k]] for k in part] for part in cut]
            chains.append((parts[0], None, 0))
            chains += [(part, parts[0][0], 1) for part in parts[1:]]
            if track_passes == 2:
                again += [(part, before[-1], 0) for before, part in zip(parts, parts[1:])]
    return _side_by_side(chains) + _side_by_side(again)


def _side_by_side(chains: Sequence[tuple[list[int], int | None, int]]) -> list[Step]:
    """Steps that advance ``chains`` (rows, the row the first continues, the
    step it starts at) a row at a time, each row continuing the one before."""
    steps: list[Step] = []
    for s in range(max((len(c) + start for c, _, start in chains), default=0)):
        step: Step = []
        for c, head_before, start in chains:
            k = s - start
            if 0 <= k < len(c):
                step.append((c[k], c[k - 1] if k else head_before))
        steps.append(step)
    return steps
