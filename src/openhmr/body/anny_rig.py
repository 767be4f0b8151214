"""Anny's keypoints from its posed bones alone: the kinematics the fitter runs.

Anny's rig has 104 bones; openhmr rotates 30 of them (its 22 joints, each
foot's five toes sharing one rotation) and leaves the others at rest relative
to their parents. Anny's forward kinematics still chains all 104, and it
finds every bone's rest orientation from the shape. When only keypoints are
wanted — inside the fitter's loop, hundreds of times per person — most of that
work is spent on bones that cannot move by themselves.

**The algebra.** In Anny's ``"local-ref"`` parameterisation, a bone c with
parent p has a rest head h_c and rest orientation R_c (both depend on the
shape), a fixed reference orientation U_c, and a delta rotation D_c (the
identity unless openhmr poses it). The posed bone has orientation V_c and
head w_c. Writing G_c = V_c·U_cᵀ, Anny's chain is

    G_root = U_rootᵀ·D_root,   G_c = G_p·D_c,
    w_root = 0,                w_c = w_p + G_p·A_p·(h_c − h_p),

with A_p = U_p·R_pᵀ (the identity for the root), and linear blend skinning
takes a rest point x of bone c to G_c·B_c·(x − h_c) + w_c, B_c = U_c·R_cᵀ.

An unposed bone has G_c = G_p, so everything that hangs from a posed bone a
through unposed bones moves rigidly with it: a point x of such a bone c goes
to G_a·y + w_a, where

    y = B_c·(x − h_c) + Σ_{q on the path from a down to c} A_{p(q)}·(h_q − h_{p(q)})

depends on the shape only. A posed bone's head is likewise its posed parent's
head plus that parent's G times a shape-only offset. So each evaluation
computes the shape-only points (rest orientations of the 88 bones that carry
a keypoint or lead to one, instead of all 104) and then chains the 30 posed
bones in 8 levels.

The keypoints are Anny's regressed ones through the "virtual vertices" of
:func:`openhmr.body.anny._keypoint_model` (one rigid point per keypoint and
influencing bone): the same numbers as Anny's own forward pass up to
round-off (tests/test_anny.py checks values and gradients in float64), in
less time (``benchmarks/anny_keypoints_speed.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from openhmr.geometry.rotations import nearest_rotation

if TYPE_CHECKING:  # pragma: no cover
    import anny as anny_pkg


class PhenotypeCoefficients(nn.Module):
    """Anny's map from phenotypes to blend-shape coefficients, vectorised.

    Anny interpolates each phenotype linearly between its anchors (age:
    newborn, baby, child, young, old; weight: min, average, max; ...), which
    gives a weight per variation; each of its phenotype blend shapes is the
    product of the weights of the variations it combines (one per phenotype
    at most), and the compact basis projects these products. This computes
    the same numbers with a handful of batched operations: the phenotypes
    openhmr does not expose (race, cup size, firmness at their default 0.5)
    are constant and folded into the projection, and the product is taken as
    one multiplication per phenotype instead of a product over a masked
    (B, 624, 26) tensor, whose backward pass was the costliest step of the map.

    Args:
        model: an Anny model (its anchors, variation mask and projection).
    """

    # Buffers, registered in __init__ (they follow ``.to()``).
    _projection: Tensor
    _anchors: Tensor
    _last: Tensor
    _low: Tensor
    _high: Tensor
    _col_row: Tensor
    _col_anchor: Tensor
    _pick: Tensor

    def __init__(self, model: "anny_pkg.Anny") -> None:
        super().__init__()
        from anny.models.phenotype import PHENOTYPE_VARIATIONS
        from anny.utils.interpolation import linear_interpolation_coefficients

        if model.local_change_labels or model.facial_action_labels:
            raise ValueError("local changes and facial actions are not supported")
        exposed = list(model.phenotype_labels)
        dtype = model.template_vertices.dtype
        columns = [(f, i) for f, keys in PHENOTYPE_VARIATIONS.items() for i in range(len(keys))]
        mask = model.stacked_phenotype_blend_shapes_mask.to(dtype)  # (K, columns)

        # Constant weights of the variations of phenotypes left at 0.5.
        constant = torch.ones(len(columns), dtype=dtype)
        for j, (f, i) in enumerate(columns):
            if f in exposed:
                continue
            if f == "race":  # Anny normalises the three race values to sum to 1
                constant[j] = 1.0 / len(PHENOTYPE_VARIATIONS["race"])
            else:
                half = torch.tensor([0.5], dtype=dtype)
                constant[j] = linear_interpolation_coefficients(
                    half, model.anchors[f].to(dtype), extrapolate=model.extrapolate_phenotypes)[0, i]
        folded = torch.prod(constant * mask + (1 - mask), dim=-1)  # (K,)
        projection = model.phenotype_blendshape_projection
        if projection is None:
            projection = torch.eye(mask.shape[0], dtype=dtype)
        self.register_buffer("_projection", folded[:, None] * projection.to(dtype),
                             persistent=False)

        # Anchors of the exposed phenotypes, padded with increasing values.
        n = [len(model.anchors[f]) for f in exposed]
        pad = max(n)
        anchors = torch.zeros(len(exposed), pad, dtype=dtype)
        for r, f in enumerate(exposed):
            a = model.anchors[f].to(dtype)
            anchors[r, : len(a)] = a
            anchors[r, len(a):] = a[-1] + 1.0 + torch.arange(pad - len(a), dtype=dtype)
        self.register_buffer("_anchors", anchors, persistent=False)
        self.register_buffer("_last", torch.tensor(n) - 1, persistent=False)
        self.register_buffer("_low", anchors[:, 0].clone(), persistent=False)
        self.register_buffer("_high", anchors[torch.arange(len(n)), torch.tensor(n) - 1].clone(),
                             persistent=False)
        self._clamp = not model.extrapolate_phenotypes
        # Exposed variation columns: their phenotype (row) and anchor index.
        cols = [(exposed.index(f), i) for f, i in columns if f in exposed]
        self.register_buffer("_col_row", torch.tensor([r for r, _ in cols]), persistent=False)
        self.register_buffer("_col_anchor", torch.tensor([i for _, i in cols])[None],
                             persistent=False)
        # For each blend shape and exposed phenotype, the column it takes (or
        # the extra column of ones when it does not involve that phenotype).
        col_of = {c: k for k, c in enumerate(cols)}
        pick = torch.full((mask.shape[0], len(exposed)), len(cols), dtype=torch.long)
        for k in range(mask.shape[0]):
            for j in torch.nonzero(mask[k]).squeeze(1).tolist():
                f, i = columns[j]
                if f in exposed:
                    pick[k, exposed.index(f)] = col_of[(exposed.index(f), i)]
        self.register_buffer("_pick", pick.T.contiguous(), persistent=False)

    def forward(self, phenotypes: Tensor) -> Tensor:
        """(B, P) phenotypes, in the model's label order → (B, C) coefficients."""
        v = phenotypes.T  # (P, B)
        if self._clamp:  # as Anny: torch.where keeps a one-sided gradient at the ends
            v = torch.where(v < self._low[:, None], self._low[:, None], v)
            v = torch.where(v > self._high[:, None], self._high[:, None], v)
        idx = torch.searchsorted(self._anchors, v.contiguous(), side="left")
        idx = torch.minimum(idx.clamp(min=1), self._last[:, None])
        lower = self._anchors.gather(1, idx - 1)
        upper = self._anchors.gather(1, idx)
        alpha = (v - lower) / (upper - lower)  # (P, B)
        a, i = alpha[self._col_row].T, idx[self._col_row].T  # (B, columns)
        zero = torch.zeros_like(a)
        weights = torch.where(self._col_anchor == i - 1, 1.0 - a,
                              torch.where(self._col_anchor == i, a, zero))
        weights = torch.cat([weights, torch.ones_like(a[:, :1])], 1)
        product = weights[:, self._pick[0]]
        for r in range(1, self._pick.shape[0]):
            product = product * weights[:, self._pick[r]]
        return product @ self._projection


class AnnyKeypointRig(nn.Module):
    """Posed keypoint points and bone heads of Anny, through the posed bones only.

    Args:
        model: an Anny model whose vertices are the keypoints' virtual vertices
            (one bone each), ``"local-ref"`` pose parameterisation, ``"cached"``
            bone orientation.
        posed_bones: Anny bone index of each posed bone, in the order of the
            rotations given to :meth:`forward`; bone 0 (the root) must be one.
    """

    # Buffers, registered in __init__ (they follow ``.to()``); ``_prev{k}``
    # per tree level besides.
    _order: Tensor
    _inverse: Tensor
    _bones: Tensor
    _is_root: Tensor
    _edge: Tensor
    _edge_parent: Tensor
    _node_paths: Tensor
    _vertex_paths: Tensor
    _vertex_bone: Tensor
    _vertex_node: Tensor
    _head_template: Tensor
    _head_blend: Tensor
    _orient_template: Tensor
    _orient_blend: Tensor
    _reference: Tensor
    _root_reference_t: Tensor
    _vertex_template: Tensor
    _vertex_blend: Tensor

    def __init__(self, model: "anny_pkg.Anny", posed_bones: list[int]) -> None:
        super().__init__()
        if model.pose_parameterization != "local-ref" or model.bone_orientation != "cached":
            raise ValueError("the keypoint rig needs Anny's 'local-ref' pose and 'cached' "
                             f"orientations, got {model.pose_parameterization!r} and "
                             f"{model.bone_orientation!r}")
        if model.root_identity_orientation or model.rest_orientation_refiner is not None:
            raise ValueError("the keypoint rig does not support Anny's root-identity "
                             "orientation or rest-orientation refiner")
        if 0 not in posed_bones:
            raise ValueError("the root bone must be posed")
        self._coefficients = PhenotypeCoefficients(model)
        parent = [int(p) for p in model.bone_parents]
        posed = set(posed_bones)

        def anchor(bone: int) -> int:
            while bone not in posed:
                bone = parent[bone]
            return bone

        def path(bone: int, stop: int) -> list[int]:
            """Bones q from ``bone`` up to (not including) ``stop``; each is an
            edge p(q) → q."""
            out = []
            while bone != stop:
                out.append(bone)
                bone = parent[bone]
            return out

        # Posed bones ordered by depth in the posed tree (root first).
        depth = {0: 0}

        def posed_depth(bone: int) -> int:
            if bone not in depth:
                depth[bone] = posed_depth(anchor(parent[bone])) + 1
            return depth[bone]

        order = sorted(posed_bones, key=lambda b: (posed_depth(b), posed_bones.index(b)))
        node_of = {b: i for i, b in enumerate(order)}
        levels: list[tuple[int, int]] = []
        for i, b in enumerate(order):
            if not levels or depth[b] != depth[order[levels[-1][0]]]:
                levels.append((i, i + 1))
            else:
                levels[-1] = (levels[-1][0], i + 1)
        # Each posed bone's posed parent, as an index into the previous level.
        prev_index = []
        for b in order[1:]:
            p_node = node_of[anchor(parent[b])]
            first = next(lo for lo, hi in levels if lo <= p_node < hi)
            prev_index.append(p_node - first)
        node_paths = [[] if b == 0 else path(b, anchor(parent[b])) for b in order]

        vertex_bone = [int(x) for x in model.vertex_bone_indices[:, 0]]
        vertex_anchor = [anchor(b) for b in vertex_bone]
        vertex_paths = [path(b, a) for b, a in zip(vertex_bone, vertex_anchor)]

        edges = sorted({q for p in node_paths + vertex_paths for q in p})
        bones = sorted(set(edges) | {parent[q] for q in edges} | set(vertex_bone) | set(order))
        local = {b: i for i, b in enumerate(bones)}
        incidence = lambda paths: torch.tensor(  # noqa: E731
            [[1.0 if q in p else 0.0 for q in edges] for p in paths], dtype=model.dtype)

        self.register_buffer("_order", torch.tensor([posed_bones.index(b) for b in order]),
                             persistent=False)
        self._levels = levels
        for k, (lo, hi) in enumerate(levels[1:]):
            self.register_buffer(f"_prev{k}", torch.tensor(prev_index[lo - 1:hi - 1]),
                                 persistent=False)
        self.register_buffer("_inverse", torch.argsort(self._order), persistent=False)
        self.register_buffer("_bones", torch.tensor(bones), persistent=False)
        self.register_buffer("_is_root", torch.tensor([b == 0 for b in bones]), persistent=False)
        self.register_buffer("_edge", torch.tensor([local[q] for q in edges]), persistent=False)
        self.register_buffer("_edge_parent", torch.tensor([local[parent[q]] for q in edges]),
                             persistent=False)
        self.register_buffer("_node_paths", incidence(node_paths), persistent=False)
        self.register_buffer("_vertex_paths", incidence(vertex_paths), persistent=False)
        self.register_buffer("_vertex_bone", torch.tensor([local[b] for b in vertex_bone]),
                             persistent=False)
        self.register_buffer("_vertex_node", torch.tensor([node_of[a] for a in vertex_anchor]),
                             persistent=False)
        idx = self._bones
        self.register_buffer("_head_template", model.template_bone_heads[idx].clone(),
                             persistent=False)
        self.register_buffer("_head_blend", model.bone_heads_blendshapes[:, idx].clone(),
                             persistent=False)
        self.register_buffer("_orient_template",
                             model.bone_template_orientation_matrices[idx].clone(),
                             persistent=False)
        self.register_buffer("_orient_blend", model.bone_orientation_blendshapes[:, idx].clone(),
                             persistent=False)
        self.register_buffer("_reference", model.reference_bone_orientations[idx].clone(),
                             persistent=False)
        self.register_buffer("_root_reference_t",
                             model.reference_bone_orientations[0].T.clone(), persistent=False)
        self.register_buffer("_vertex_template", model.template_vertices.clone(), persistent=False)
        self.register_buffer("_vertex_blend", model.blendshapes.clone(), persistent=False)

    def blend_coefficients(self, phenotypes: Tensor) -> Tensor:
        """(B, 6) Anny phenotypes → (B, C) blend-shape coefficients."""
        return self._coefficients(phenotypes)

    def rest_points(self, coeffs: Tensor) -> tuple[Tensor, Tensor]:
        """The shape-only part.

        Args:
            coeffs: (B, C) blend-shape coefficients.
        Returns:
            y: (B, N, 3) each virtual vertex relative to its posed bone's head,
            in that bone's reference frame; offsets: (B, P, 3) each posed bone's
            head relative to its posed parent's, likewise (the root's: 0);
            Anny's frame, metres; posed bones in depth order.
        """
        heads = self._head_template + torch.einsum("ba,akd->bkd", coeffs, self._head_blend)
        cross = self._orient_template + torch.einsum("ba,akij->bkij", coeffs, self._orient_blend)
        # R, as Anny's "cached" orientation computes it (roma.special_procrustes),
        # by a Newton iteration that costs less than roma's eigen-solver.
        rest = nearest_rotation(cross)
        to_reference = self._reference @ rest.transpose(-1, -2)  # B = U·Rᵀ
        eye = torch.eye(3, dtype=heads.dtype, device=heads.device)
        along = torch.where(self._is_root[:, None, None], eye, to_reference)  # A
        e = self._edge
        p = self._edge_parent
        step = (along[:, p] @ (heads[:, e] - heads[:, p])[..., None]).squeeze(-1)
        offsets = torch.einsum("nq,bqd->bnd", self._node_paths, step)
        vertices = self._vertex_template + torch.einsum("ba,avd->bvd", coeffs,
                                                        self._vertex_blend)
        v = self._vertex_bone
        y = (to_reference[:, v] @ (vertices - heads[:, v])[..., None]).squeeze(-1)
        return y + torch.einsum("nq,bqd->bnd", self._vertex_paths, step), offsets

    def forward(self, deltas: Tensor, phenotypes: Tensor) -> tuple[Tensor, Tensor]:
        """Pose the virtual vertices and the posed bones' heads.

        Args:
            deltas: (B, P, 3, 3) each posed bone's delta rotation in Anny's
                world-aligned axes, in ``posed_bones`` order.
            phenotypes: (B, 6) Anny phenotypes.
        Returns:
            vertices (B, N, 3) and heads (B, P, 3) in ``posed_bones`` order;
            Anny's frame, metres, the root's head at the origin.
        """
        y, offsets = self.rest_points(self.blend_coefficients(phenotypes))
        d = deltas[:, self._order]
        g = [(self._root_reference_t @ d[:, 0])[:, None]]
        w = [torch.zeros_like(offsets[:, :1])]
        for k, (lo, hi) in enumerate(self._levels[1:]):
            prev = getattr(self, f"_prev{k}")
            g_p, w_p = g[-1][:, prev], w[-1][:, prev]
            w.append(w_p + (g_p @ offsets[:, lo:hi, :, None]).squeeze(-1))
            g.append(g_p @ d[:, lo:hi])
        g_all, w_all = torch.cat(g, 1), torch.cat(w, 1)
        n = self._vertex_node
        vertices = (g_all[:, n] @ y[..., None]).squeeze(-1) + w_all[:, n]
        return vertices, w_all[:, self._inverse]
