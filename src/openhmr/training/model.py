"""HMR and its adversarial prior as one module whose forward returns the losses.

One training step of the original (HMR_REFERENCE §8, §9):

1. the encoder and the IEF regressor predict Θ₁, Θ₂, Θ₃ for the B crops;
2. the body model poses Θ₃; its cocoplus-19 keypoints, projected, meet the
   2D labels (L1), and its 14 LSP joints and (rotations, betas) meet the 3D
   labels — last iteration only (Q2);
3. the discriminator scores 3B mocap samples (real) and the rotations and
   betas of all three iterations (3B fakes);
4. E and D are updated **simultaneously from this one forward pass** (Q7):
   E minimises L_E = w_d·L_adv + w_kp·L_kp + w_3d·(L_smpl + L_j3d) and D
   minimises L_D = w_d·(L_real + L_fake), each optimiser touching only its
   own variables, with D's parameters as they were before the step.

In the original there is no stop-gradient on the fakes for D, but D's
optimiser only applies the gradient to D's variables, so the missing
stop-gradient never changed an update. openhmr computes the same two
gradients in a single backward pass of L_E + L_D by cutting the two
cross-terms explicitly: D's loss sees detached fakes, and E's adversarial
loss sees D through detached parameters (``torch.func.functional_call``).
The result is the original's simultaneous update, exactly; a single backward
is also what ``DistributedDataParallel`` needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from openhmr import losses
from openhmr.geometry.camera import weak_perspective_project
from openhmr.geometry.rotations import axis_angle_to_matrix
from openhmr.nets import HMR, FactorizedDiscriminator

KEYPOINTS_2D = "cocoplus19"
JOINTS_3D = "lsp14"


@dataclass
class LossWeights:
    """The paper's weights (do_train.sh): keypoints 60, 3D 60, adversarial 1."""

    e_loss_weight: float = losses.E_LOSS_WEIGHT
    e_3d_weight: float = losses.E_3D_WEIGHT
    d_loss_weight: float = losses.D_LOSS_WEIGHT
    use_3d_label: bool = True


class HMRTrainer(nn.Module):
    """``forward(batch tensors, mocap) -> (L_E + L_D, logs, last-iteration outputs)``.

    Args:
        hmr: the network (encoder, regressor with its trainable mean Θ₀, body model).
        discriminator: the factorised prior, or None for ``encoder_only``.
        weights: loss weights.
        autocast_dtype: dtype of the encoder's autocast region on CUDA
            (bf16) or None. The regressor, body model, discriminator and
            losses always run in float32.
    """

    def __init__(self, hmr: HMR, discriminator: FactorizedDiscriminator | None, weights: LossWeights,
                 autocast_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.hmr = hmr
        self.discriminator = discriminator
        self.weights = weights
        self.autocast_dtype = autocast_dtype
        for needed in (KEYPOINTS_2D, JOINTS_3D):
            if needed not in hmr.body.keypoint_sets:
                raise ValueError(f"the {hmr.body.name} body model lacks the {needed} keypoints HMR trains on")

    def forward(
        self, images: Tensor, keypoints: Tensor, has_joints3d: Tensor, joints3d: Tensor,
        has_smpl: Tensor, pose: Tensor, betas: Tensor,
        mocap_pose: Tensor | None = None, mocap_betas: Tensor | None = None, log_stages: bool = False,
    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """One step's losses.

        Args:
            images: (B, 3, S, S) crops in [-1, 1] (any memory format).
            keypoints: (B, 19, 3) cocoplus labels (x, y, vis), normalised.
            has_joints3d, has_smpl: (B,) bool.
            joints3d: (B, 14, 3) metres. pose: (B, 3·J). betas: (B, k).
            mocap_pose, mocap_betas: (T·B, 3·J), (T·B, k) real samples for D.
            log_stages: also compute the 2D keypoint loss of every iteration
                (``kp_loss_stage{i}``, logged only, as the original).
        Returns:
            total: L_E + L_D (their gradients do not mix, see module docstring);
            logs: detached scalars; outputs: last-iteration ``cam``, ``pose``,
            ``betas``, ``keypoints2d`` (B, 19, 2) (detached). No mesh: the
            body model computes only what the losses use (see
            :meth:`~openhmr.nets.HMR.decode`).
        """
        hmr = self.hmr
        w = self.weights
        if self.autocast_dtype is not None and images.is_cuda:
            with torch.autocast("cuda", dtype=self.autocast_dtype):
                features = hmr.encode(images)
        else:
            features = hmr.encode(images)
        thetas = hmr.regress(features.float())
        last = hmr.decode(thetas[-1], mesh=False)
        pred_kp = last.keypoints2d[KEYPOINTS_2D]

        logs: dict[str, Tensor] = {}
        kp_loss = losses.keypoint_l1(pred_kp, keypoints)
        e_loss = w.e_loss_weight * kp_loss
        logs["kp_loss"] = kp_loss
        if log_stages:
            with torch.no_grad():
                for i, theta in enumerate(thetas[:-1]):
                    cam, p, b = hmr.split_theta(theta)
                    kp3d = hmr.body.forward_keypoints(p, b).keypoints[KEYPOINTS_2D]
                    logs[f"kp_loss_stage{i}"] = losses.keypoint_l1(weak_perspective_project(kp3d, cam), keypoints)
            logs[f"kp_loss_stage{len(thetas) - 1}"] = kp_loss

        if w.use_3d_label:
            smpl_loss = losses.smpl_param_loss(last.rotations, last.betas, pose, betas, has_smpl)
            j3d_loss = losses.joints3d_loss(last.keypoints3d[JOINTS_3D], joints3d, has_joints3d)
            e_loss = e_loss + w.e_3d_weight * (smpl_loss + j3d_loss)
            logs["smpl_loss"] = smpl_loss
            logs["joints3d_loss"] = j3d_loss

        d_total = torch.zeros((), device=e_loss.device)
        if self.discriminator is not None:
            if mocap_pose is None or mocap_betas is None:
                raise ValueError("the adversarial prior needs mocap samples")
            # Fakes: non-root rotations and betas of every IEF iteration (T·B rows).
            rotations = [hmr.pose_rotations(t) for t in thetas[:-1]] + [last.rotations]
            fake_rot = torch.cat(rotations)[:, 1:]
            fake_betas = torch.cat([hmr.split_theta(t)[2] for t in thetas])
            real_rot = axis_angle_to_matrix(mocap_pose.reshape(mocap_pose.shape[0], -1, 3))[:, 1:]
            n_real = real_rot.shape[0]
            # D's loss: real rows first, then the fakes cut from E's graph.
            scores = self.discriminator(torch.cat([real_rot, fake_rot.detach()]),
                                        torch.cat([mocap_betas, fake_betas.detach()]))
            real_scores, fake_scores_d = scores[:n_real], scores[n_real:]
            d_real, d_fake = losses.d_loss_terms(real_scores, fake_scores_d)
            d_total = w.d_loss_weight * (d_real + d_fake)
            # E's loss: D with its parameters frozen for this term.
            frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
            fake_scores_e = functional_call(self.discriminator, frozen, (fake_rot, fake_betas))
            e_adv = losses.e_adv_loss(fake_scores_e)
            e_loss = e_loss + w.d_loss_weight * e_adv
            logs.update(e_adv_loss=e_adv, d_loss_real=d_real, d_loss_fake=d_fake, d_loss=d_total)
            joints = self.discriminator.num_joints
            logs["d_out_real/joints"] = real_scores[:, :joints].mean()
            logs["d_out_real/all_joints"] = real_scores[:, joints].mean()
            logs["d_out_real/shape"] = real_scores[:, joints + 1].mean()
            logs["d_out_fake/joints"] = fake_scores_d[:, :joints].mean()
            logs["d_out_fake/all_joints"] = fake_scores_d[:, joints].mean()
            logs["d_out_fake/shape"] = fake_scores_d[:, joints + 1].mean()
        logs["e_loss"] = e_loss
        logs = {k: v.detach() for k, v in logs.items()}
        outputs = {
            "cam": last.cam.detach(), "pose": last.pose.detach(), "betas": last.betas.detach(),
            "keypoints2d": pred_kp.detach(),
        }
        return e_loss + d_total, logs, outputs
