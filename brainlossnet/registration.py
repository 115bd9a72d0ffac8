"""Non-linear registration of two halfway crops and warping of masks (DESIGN §1 steps 4 and 6).

The trained :class:`~brainlossnet.models.registration_unet.RegistrationUNet` ships inside the
package (``brainlossnet/data/weights/``); nothing is downloaded. Displacements are float32
(3, X, Y, Z) arrays in voxels, pull-back: ``warped(x) = moving(x + u(x))``.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from importlib import resources

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F
from monai.losses import DiffusionLoss
from torch.autograd.function import once_differentiable

from brainlossnet.models.registration_unet import (
    MODEL_NAME,
    WEIGHTS_FILE,
    RegistrationConfig,
    RegistrationUNet,
    make_warp,
    normalize_intensity,
    upsample_displacement,
)


def _weights_bytes() -> bytes:
    """The packaged weights file."""
    return resources.files("brainlossnet").joinpath("data", "weights", WEIGHTS_FILE).read_bytes()


def model_version(weights_bytes: bytes) -> str:
    """``MODEL_NAME`` plus the first 12 hex digits of the weights file's SHA-256."""
    return f"{MODEL_NAME}+{hashlib.sha256(weights_bytes).hexdigest()[:12]}"


MODEL_VERSION: str = model_version(_weights_bytes())
"""Identity of the packaged network (recorded in derivatives; an input of the register stage, so part of its cache key)."""


def load_registration_model(device: str = "cpu", weights_bytes: bytes | None = None) -> RegistrationUNet:
    """The registration network in evaluation mode on ``device`` (no network access).

    ``weights_bytes``: a weights file written by ``brainlossnet train --export`` (benchmarks
    compare candidates with it); ``None``, the packaged weights.
    """
    payload = torch.load(io.BytesIO(_weights_bytes() if weights_bytes is None else weights_bytes),
                         map_location="cpu", weights_only=True)
    model = RegistrationUNet(RegistrationConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


REFINE_STEPS: int = 30
"""Default number of test-time refinement steps (:func:`refine_velocity`); 0 = the network alone.

Chosen on pairs simulated from real scans (docs/registration.md, "Inference choices on real
anatomy"; calibrated on one person, measured on two others): with the 13-voxel NCC window,
30 steps against the former 15 raise the slope of estimate on truth from 0.907 to 0.960,
lower the 95th percentile error from 0.191 to 0.143 % and the response to a 0.8 % scaling
of FU from 0.128 to 0.060 %, at 1.76x the registration time (about 32 s of one CPU core for
both directions of a 176 x 208 x 208 pair); 8 steps were worse on every measure. (On the
early phantom pairs more than 15 steps recovered less; on real anatomy they recover more.)
"""

REFINE_LEARNING_RATE_VOX: float = 0.3
"""Default initial Adam step of the refinement, in half-resolution voxels (2 mm at 1 mm input).

Decays linearly to 0 over the steps. Chosen with one-sided refinement (0.1 moved too little
from the network's field in 25-30 steps); kept for the inverse-consistent refinement.
"""

REFINE_SMOOTHNESS_WEIGHT: float = 0.3
"""Weight of MONAI ``DiffusionLoss`` (mean squared gradient) on the half-resolution velocity.

A rough velocity makes ``exp(v)`` and ``exp(-v)`` inverse only up to the grid's
interpolation error, and that error reads as forward and backward disagreeing: at 0.03 the
local volume ratio inside the brain spanned 0.58-1.54 (1st-99th percentile) on a 1 % lobar
loss, ``u_fw`` composed with ``u_bw`` left 0.07 voxels on average, and backward read 15 %
more of the change than forward. On pairs simulated from real scans (docs/registration.md,
"Smoothness and forward/backward agreement"; calibrated on one person, measured on two
others, 30 steps, 13-voxel window) 0.3 against 0.03 narrowed the 95th percentile |fw - bw|
from 0.171 to 0.114 %, lowered the rescans' 95th percentile |BVL| from 0.087 to 0.059 %,
cut the response to a 0.8 % scaling of FU from 0.060 to 0.004 % and brought the slope
from 0.960 to 0.994, for a wider error on the atrophy pairs (95th percentile 0.130 ->
0.186 %). The smoother field reads less of the change raw (m_scale 0.914 against 1.018),
which the calibration takes up.
"""

REFINE_NCC_KERNEL_VOX: int = 13
"""Window of the local NCC during refinement, in half-resolution voxels (26 mm at 1 mm input).

On pairs simulated from real scans a 13-voxel window brought forward and backward closer
and lowered the error against 9 (95th percentile |fw - bw| 0.147 against 0.166 %, error
0.146 against 0.191 %, both at 15 steps); windows of 3 and 5 gave a lower slope and the
directions further apart (docs/registration.md).
"""

REFINE_FINE_STEPS: int = 4
"""Default refinement steps with the similarity at full resolution, after the half-resolution ones.

The velocity stays on the network's half-resolution grid; only the NCC is evaluated on the
full-resolution images, warped by the upsampled displacement (:func:`refine_velocity` with
``full_resolution=True``), which resolves the thin cortex and sulci that 2x pooling blurs.
On pairs simulated from six people (docs/registration.md, "Similarity at full resolution")
two such steps of 0.1 raised the share of the true change the fields recover from 0.64-0.84
to 0.92-1.03 and brought the calibrated atrophy slopes of the five people other than the
calibration person within 0.95-1.06 (0.79-1.13 without). They read a sharpness difference between the scans as change far more than the
pooled similarity, which the register stage's sharpness matching (:mod:`brainlossnet.sharpness`)
removes for a Gaussian blur. Four steps of :data:`REFINE_FINE_LEARNING_RATE_VOX` since
the eleventh session (two of 0.1 from the seventh, none before): two larger steps read small changes
about an eighth larger than large ones, relative to their truth (docs/registration.md,
"Response to the size of the change"). The ``default`` calibration profile is fitted for 4,
``pooled`` for 0.
"""

REFINE_FINE_LEARNING_RATE_VOX: float = 0.05
"""Initial Adam step of the full-resolution stage, in half-resolution voxels (decays linearly to 0).

Smaller than :data:`REFINE_LEARNING_RATE_VOX`: the stage starts from the half-resolution
optimum and only adds detail. With 4 steps of 0.05 the median estimate / truth of the
benchmark's atrophy pairs is about the same for small and large changes; with 2 of 0.1 it
was 1.13 against 1.01 (docs/registration.md, "Response to the size of the change").
"""

REFINE_NOISE_FLOOR: float = 0.06
"""Local standard deviation (normalised intensity) below which a window counts as flat.

MONAI's LNCC takes ``max(variance, smooth_dr)`` in its denominator; ``smooth_dr`` is set to
this floor squared times the window's voxel count. Without a floor the optimiser raises the
NCC mostly by matching the independent noise of the two scans in air and in flat tissue
(on a synthetic pair half the crop is air, with local NCC 0.6 against 0.97 in the brain),
which roughens the field. With one-sided refinement the floor also set the size and sign of
the spurious common expansion of both directions (30 steps on a -1 % pair, forward / backward:
0.03: -0.20 / -0.66 %; 0.06: -0.36 / -0.53 %; 0.1: -0.97 / +0.16 %); the inverse-consistent
loss removes that term whatever the floor (:func:`refine_velocity`).
"""


REFINE_INTEGRATION_STEPS: int = 4
"""Squarings used inside the refinement loop (the final field uses the network's own, 7).

The loop's integrated field only serves to evaluate the similarity (its gradient is applied
to the velocity unchanged); 4 squarings gave the same volume changes as 7 on synthetic pairs
and save about a fifth of the time per step.
"""


INVERSE_CONSISTENT: bool = True
"""Default of :func:`predict_displacement`: one velocity refined for both directions.

On half-scale phantom pairs it brought forward and backward estimates from about 1 % apart
to 0.02 % (Jacobian integration) or 0.2 % (warped masks); on full-size pairs one-sided
directions are 0.4-0.7 % apart except near 25-30 steps, inverse-consistent ones within 0.01 %
(Jacobian). Same cost per pair (docs/registration.md).
"""


def _normalized_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """(1, 1, X, Y, Z) float32 tensor of :func:`normalize_intensity` (image) on ``device``."""
    return torch.from_numpy(normalize_intensity(image))[None, None].to(device)


def _window_sums(volume: torch.Tensor, width_vox: int) -> torch.Tensor:
    """Sums over the ``width_vox``-cube around every voxel (zero outside), per channel.

    The window of MONAI's rectangular LNCC kernel, computed separably as differences of
    cumulative sums along each axis: on CPU several times faster than MONAI's 1D
    convolutions, and as exact in float32 for windows on crops of a few hundred voxels.
    """
    half = width_vox // 2
    for dim in (2, 3, 4):
        padding = [0] * 6
        padding[2 * (4 - dim)], padding[2 * (4 - dim) + 1] = half + 1, half  # F.pad lists the last axis first
        cumulative = F.pad(volume, padding).cumsum(dim)
        length = volume.shape[dim]
        volume = cumulative.narrow(dim, width_vox, length) - cumulative.narrow(dim, 0, length)
    return volume


class _LNCCWithFixedStatistics(torch.autograd.Function):
    """The loss of :class:`FixedImageLNCC` with its gradient in closed form.

    With window sums ``S`` (a symmetric box filter with zero padding, hence its own adjoint),
    ``cross = S(tp) - S(p) S(t) / N``, ``var_p = max(S(p²) - S(p)² / N, floor)`` and
    ``loss = -mean(cross² / (var_t var_p))`` over ``M`` voxels, the chain rule gives::

        g_cross  = -2 cross / (M var_t var_p)       gradient with respect to S(tp)
        g_var    = cross² / (M var_t var_p²)        ... to S(p²), 0 where the floor holds
        g_sum    = -(g_cross S(t) + 2 g_var S(p)) / N    ... to S(p)
        dloss/dp = S(g_sum) + 2 p S(g_var) + t S(g_cross)

    so the backward pass filters three maps, like the forward one, instead of retracing the
    pads, cumulative sums and differences of :func:`_window_sums` (one full-resolution
    evaluation of both directions on 2 CPU cores: traced backward 2.2 s, this one 1.1 s,
    forward 1.0 s). First derivatives only.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        moving: torch.Tensor,
        fixed: torch.Tensor,
        fixed_sum: torch.Tensor,
        fixed_var: torch.Tensor,
        kernel_vox: int,
        count: float,
        smooth_dr: float,
    ) -> torch.Tensor:
        sums = _window_sums(torch.cat([moving, moving * moving, moving * fixed], dim=1), kernel_vox)
        moving_sum, moving_sq_sum, product_sum = sums[:, :1], sums[:, 1:2], sums[:, 2:]
        cross = product_sum - moving_sum * fixed_sum / count
        moving_var_raw = moving_sq_sum - moving_sum * moving_sum / count
        ctx.save_for_backward(moving, fixed, fixed_sum, fixed_var, moving_sum, cross, moving_var_raw)
        ctx.kernel_vox, ctx.count, ctx.smooth_dr = kernel_vox, count, smooth_dr
        return -torch.mean(cross * cross / (fixed_var * torch.clamp(moving_var_raw, min=smooth_dr)))

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_loss: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        moving, fixed, fixed_sum, fixed_var, moving_sum, cross, moving_var_raw = ctx.saved_tensors
        scale = grad_loss / cross.numel()
        ratio = cross / (fixed_var * torch.clamp(moving_var_raw, min=ctx.smooth_dr))
        grad_cross = -2.0 * scale * ratio
        grad_var = torch.where(moving_var_raw >= ctx.smooth_dr, scale * ratio * ratio * fixed_var, 0.0)
        grad_sum = -(grad_cross * fixed_sum + 2.0 * grad_var * moving_sum) / ctx.count
        filtered = _window_sums(torch.cat([grad_sum, grad_var, grad_cross], dim=1), ctx.kernel_vox)
        grad_moving = filtered[:, :1] + 2.0 * moving * filtered[:, 1:2] + fixed * filtered[:, 2:]
        return grad_moving, None, None, None, None, None, None


class FixedImageLNCC:
    """Negative mean local squared NCC with one fixed image, as MONAI computes it.

    The value of MONAI ``LocalNormalizedCrossCorrelationLoss(kernel_type="rectangular",
    smooth_nr=0)`` with ``smooth_dr = kernel_vox**3 * noise_floor**2``: window sums ``S``,
    ``cross = S(tp) - S(p) S(t) / N``, ``var = max(S(x²) - S(x)² / N, smooth_dr)``,
    ``ncc = cross² / (var_t var_p)``. The fixed image's window statistics are computed once,
    so each evaluation filters three maps instead of five (refinement evaluates it every step),
    and the gradient with respect to the moving image is computed in closed form
    (:class:`_LNCCWithFixedStatistics`); the fixed image gets none.

    Parameters
    ----------
    fixed
        (B, 1, X, Y, Z) fixed image.
    kernel_vox
        Odd window width in voxels.
    noise_floor
        Local standard deviation below which a window's variance is floored (see
        :data:`REFINE_NOISE_FLOOR`).
    """

    def __init__(self, fixed: torch.Tensor, kernel_vox: int, noise_floor: float) -> None:
        if kernel_vox % 2 == 0:
            raise ValueError(f"the NCC window must be odd, got {kernel_vox}")
        self.kernel_vox = kernel_vox
        self.count = float(kernel_vox**3)
        self.smooth_dr = max(self.count * noise_floor**2, 1e-5)  # MONAI's default floor is 1e-5
        self.fixed = fixed.detach()
        sums = _window_sums(torch.cat([self.fixed, self.fixed * self.fixed], dim=1), kernel_vox)
        self.fixed_sum = sums[:, :1]
        self.fixed_var = torch.clamp(sums[:, 1:] - self.fixed_sum * self.fixed_sum / self.count, min=self.smooth_dr)

    def __call__(self, moving: torch.Tensor) -> torch.Tensor:
        """The loss for a (warped) moving image of the fixed image's shape."""
        return _LNCCWithFixedStatistics.apply(
            moving, self.fixed, self.fixed_sum, self.fixed_var, self.kernel_vox, self.count, self.smooth_dr
        )


def refine_velocity(
    model: RegistrationUNet,
    velocity: torch.Tensor,
    moving: torch.Tensor,
    fixed: torch.Tensor,
    *,
    steps: int = REFINE_STEPS,
    learning_rate_vox: float = REFINE_LEARNING_RATE_VOX,
    smoothness_weight: float = REFINE_SMOOTHNESS_WEIGHT,
    ncc_kernel_vox: int = REFINE_NCC_KERNEL_VOX,
    noise_floor: float = REFINE_NOISE_FLOOR,
    inverse_consistent: bool = False,
    full_resolution: bool = False,
) -> torch.Tensor:
    """Test-time refinement of the network's half-resolution velocity on the pair itself.

    Minimises the training objective's two terms over the half-resolution velocity ``v``
    alone (the network's weights are untouched)::

        loss(v) = -LNCC(pool(moving) o (id + exp(v)), pool(fixed)) + smoothness_weight * mean |grad v|^2

    or, with ``full_resolution``, the LNCC of the unpooled images warped by the upsampled
    ``exp(v)`` (the noise floor, tuned on pooled images, is kept as it is).

    with ``pool`` the network's 2x average pooling, ``exp`` its scaling and squaring
    (:meth:`RegistrationUNet.half_resolution_displacement`), the local NCC of MONAI
    ``LocalNormalizedCrossCorrelationLoss`` (:class:`FixedImageLNCC`, window ``ncc_kernel_vox``,
    variance floor ``noise_floor``, see :data:`REFINE_NOISE_FLOOR`) and MONAI
    ``DiffusionLoss``. Adam with
    the learning rate decaying linearly from ``learning_rate_vox`` to 0 over ``steps``
    steps, so the last updates are small and the result settles.

    With ``inverse_consistent`` one velocity serves both directions: the loss is the mean of
    ``-LNCC(moving o exp(v), fixed)`` and ``-LNCC(fixed o exp(-v), moving)``, so the forward
    field is ``exp(v)`` and the backward field its inverse ``exp(-v)``, and swapping the two
    images returns exactly ``-v``. The one-sided loss sums the similarity over the fixed
    image's voxels only, so it gains by spreading the moving image's best-matching tissue
    (brain, local NCC near 1) over more fixed voxels than its poorly matching surroundings
    (air, CSF): both directions expand their moving brain, which is no volume change at all
    but appears with opposite signs in the forward and backward estimates (docs/registration.md).
    The symmetric loss cancels that term by construction.

    The gradient of the similarity term is taken with respect to the integrated
    displacement and applied to ``v`` unchanged (the first-order log-domain update of
    log-demons, ``log(exp(v) o exp(d)) ≈ v + d``), and the loop integrates with
    :data:`REFINE_INTEGRATION_STEPS` squarings; the returned velocity is then integrated by
    the caller exactly as the network does. Backpropagating through the integration doubled
    the time per step for the same volume change on synthetic pairs (docs/registration.md).

    Parameters
    ----------
    model
        The network whose ``half_resolution_field`` produced ``velocity``.
    velocity
        (1, 3, X/2, Y/2, Z/2) starting velocity in half-resolution voxels.
    moving, fixed
        (1, 1, X, Y, Z) images with normalised intensities (as the network's inputs).
    steps
        Number of Adam steps; 0 returns ``velocity`` unchanged. The work is proportional.
    learning_rate_vox
        Initial Adam step size, half-resolution voxels.
    smoothness_weight, ncc_kernel_vox, noise_floor
        The objective, as above.
    inverse_consistent
        Refine one velocity for both directions with the symmetric loss (twice the work
        per step, for both fields at once).
    full_resolution
        Evaluate the similarity on the full-resolution images instead of ``pool(.)``, warped
        by the upsampled displacement, with a window of ``2 * ncc_kernel_vox - 1`` voxels (about
        the same width in mm); the velocity stays at half resolution. About 10-16 times the
        work per step on a CPU; it resolves what the pooling blurs (thin cortex, narrow sulci).

    Returns
    -------
    torch.Tensor
        The refined velocity, same shape, detached. Deterministic on CPU for a given
        torch thread count.
    """
    if steps < 0:
        raise ValueError(f"refinement steps must be >= 0, got {steps}")
    if learning_rate_vox <= 0:
        raise ValueError(f"the refinement learning rate must be positive, got {learning_rate_vox}")
    velocity = velocity.detach()
    if steps == 0:
        return velocity
    if full_resolution:
        moving_scaled, fixed_scaled = moving.detach(), fixed.detach()
        window_vox = 2 * ncc_kernel_vox - 1
    else:
        moving_scaled = F.avg_pool3d(moving.detach(), kernel_size=2)
        fixed_scaled = F.avg_pool3d(fixed.detach(), kernel_size=2)
        window_vox = ncc_kernel_vox
    sign = torch.ones(1, 1, 1, 1, 1)
    if inverse_consistent:  # both images warped, each onto the other, by exp(v) and exp(-v)
        moving_scaled, fixed_scaled = torch.cat([moving_scaled, fixed_scaled]), torch.cat([fixed_scaled, moving_scaled])
        sign = torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1, 1)
    sign = sign.to(velocity)
    similarity = FixedImageLNCC(fixed_scaled, window_vox, noise_floor)
    smoothness = DiffusionLoss()
    resample = make_warp(padding_mode="zeros")
    parameter = torch.nn.Parameter(velocity.clone())
    optimizer = torch.optim.Adam([parameter], lr=learning_rate_vox)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)
    with torch.enable_grad(), warnings.catch_warnings():
        # MONAI's finite differences index with a list (deprecated, same result).
        warnings.filterwarnings("ignore", message="Using a non-tuple sequence")
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            signed = sign * parameter
            with torch.no_grad():
                integrated = model.half_resolution_displacement(signed, REFINE_INTEGRATION_STEPS)
            displacement = integrated + (signed - signed.detach())
            if full_resolution:
                displacement = upsample_displacement(displacement, 2)
            loss = similarity(resample(moving_scaled, displacement)) + smoothness_weight * smoothness(parameter)
            loss.backward()
            optimizer.step()
            schedule.step()
    return parameter.detach()


def _refined_velocity(
    model: RegistrationUNet,
    moving: np.ndarray,
    fixed: np.ndarray,
    refine_steps: int,
    refine_learning_rate_vox: float,
    inverse_consistent: bool,
    smoothness_weight: float = REFINE_SMOOTHNESS_WEIGHT,
    ncc_kernel_vox: int = REFINE_NCC_KERNEL_VOX,
    fine_steps: int = REFINE_FINE_STEPS,
    fine_learning_rate_vox: float = REFINE_FINE_LEARNING_RATE_VOX,
) -> torch.Tensor:
    """The network's half-resolution velocity for ``moving`` onto ``fixed``, refined.

    Inverse-consistent: the network's two predictions are averaged antisymmetrically,
    ``(v(moving, fixed) - v(fixed, moving)) / 2``, so swapping the images negates the start too.
    """
    if np.shape(moving) != np.shape(fixed) or np.ndim(moving) != 3:
        raise ValueError(f"moving {np.shape(moving)} and fixed {np.shape(fixed)} must be 3D arrays of one shape")
    device = next(model.parameters()).device
    moving_tensor, fixed_tensor = (_normalized_tensor(a, device) for a in (moving, fixed))
    with torch.no_grad():
        velocity = model.half_resolution_field(moving_tensor, fixed_tensor)
        if inverse_consistent:
            velocity = 0.5 * (velocity - model.half_resolution_field(fixed_tensor, moving_tensor))
    velocity = refine_velocity(
        model, velocity, moving_tensor, fixed_tensor, steps=refine_steps, learning_rate_vox=refine_learning_rate_vox,
        smoothness_weight=smoothness_weight, ncc_kernel_vox=ncc_kernel_vox, inverse_consistent=inverse_consistent,
    )
    return refine_velocity(
        model, velocity, moving_tensor, fixed_tensor, steps=fine_steps, learning_rate_vox=fine_learning_rate_vox,
        smoothness_weight=smoothness_weight, ncc_kernel_vox=ncc_kernel_vox, inverse_consistent=inverse_consistent,
        full_resolution=True,
    )


def _displacement(model: RegistrationUNet, velocity: torch.Tensor) -> np.ndarray:
    """Full-resolution float32 (3, X, Y, Z) displacement of a half-resolution velocity."""
    with torch.no_grad():
        return model.field_to_displacement(velocity)[0].float().cpu().numpy()


def predict_displacement(
    model: RegistrationUNet,
    moving: np.ndarray,
    fixed: np.ndarray,
    *,
    refine_steps: int = REFINE_STEPS,
    refine_learning_rate_vox: float = REFINE_LEARNING_RATE_VOX,
    inverse_consistent: bool = INVERSE_CONSISTENT,
    refine_fine_steps: int = REFINE_FINE_STEPS,
) -> np.ndarray:
    """The displacement that warps ``moving`` onto ``fixed`` (paper, "Non-linear registration").

    The network predicts a half-resolution velocity, :func:`refine_velocity` refines it
    on this pair for ``refine_steps`` steps (then ``refine_fine_steps`` with the similarity at
    full resolution), and the network's own integration and
    upsampling turn it into the full-resolution displacement. Inverse-consistent (the
    default), ``predict_displacement(model, fixed, moving)`` is this field's inverse; when
    both directions are needed, :func:`predict_displacement_pair` gets them for the price of one.

    Parameters
    ----------
    model
        From :func:`load_registration_model` (its device is used).
    moving, fixed
        (X, Y, Z) crops of one shape, every axis a multiple of 16; intensities are
        normalised here (:func:`normalize_intensity`).
    refine_steps
        Test-time refinement steps (:data:`REFINE_STEPS` by default; 0 = the network alone).
    refine_learning_rate_vox
        Initial refinement step size in half-resolution voxels.
    inverse_consistent
        Refine one velocity for both directions with the symmetric loss (:func:`refine_velocity`).
    refine_fine_steps
        Further steps with the similarity at full resolution (:data:`REFINE_FINE_STEPS`).

    Returns
    -------
    numpy.ndarray
        float32 (3, X, Y, Z) displacement in voxels with ``moving(x + u(x)) ≈ fixed(x)``.
    """
    velocity = _refined_velocity(model, moving, fixed, refine_steps, refine_learning_rate_vox, inverse_consistent,
                                 fine_steps=refine_fine_steps)
    return _displacement(model, velocity)


def predict_displacement_pair(
    model: RegistrationUNet,
    bl: np.ndarray,
    fu: np.ndarray,
    *,
    refine_steps: int = REFINE_STEPS,
    refine_learning_rate_vox: float = REFINE_LEARNING_RATE_VOX,
    refine_smoothness_weight: float = REFINE_SMOOTHNESS_WEIGHT,
    refine_ncc_kernel_vox: int = REFINE_NCC_KERNEL_VOX,
    refine_fine_steps: int = REFINE_FINE_STEPS,
    refine_fine_learning_rate_vox: float = REFINE_FINE_LEARNING_RATE_VOX,
) -> tuple[np.ndarray, np.ndarray]:
    """Forward (BL->FU) and backward (FU->BL) displacements from one inverse-consistent refinement.

    The same fields as ``predict_displacement(model, bl, fu)`` and
    ``predict_displacement(model, fu, bl)`` with ``inverse_consistent=True``, at half the work:
    ``exp(v)`` and ``exp(-v)`` of one refined velocity. Arguments as in
    :func:`predict_displacement`; ``refine_smoothness_weight`` and ``refine_ncc_kernel_vox`` set
    the refinement's objective (:func:`refine_velocity`), so that benchmarks can weigh its choices.
    """
    velocity = _refined_velocity(
        model, bl, fu, refine_steps, refine_learning_rate_vox, True, smoothness_weight=refine_smoothness_weight,
        ncc_kernel_vox=refine_ncc_kernel_vox, fine_steps=refine_fine_steps,
        fine_learning_rate_vox=refine_fine_learning_rate_vox,
    )
    return _displacement(model, velocity), _displacement(model, -velocity)


def warp(volume: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """Resample ``volume`` at ``x + u(x)``: trilinear, 0 outside (DESIGN §1 step 6).

    The interpolation is the one the network was trained with (MONAI ``Warp``: trilinear,
    zero padding, values beyond the edge blended with 0), computed by
    :func:`scipy.ndimage.map_coordinates` on float64 coordinates so that a zero field returns
    the input exactly. A warped binary mask keeps fractional boundary values; their sum is
    the warped volume (paper, Eqs. 1-2).

    Returns
    -------
    numpy.ndarray
        float32 array of ``volume``'s shape.
    """
    volume = np.asarray(volume, dtype=np.float32)
    displacement = np.asarray(displacement)
    if displacement.shape != (3, *volume.shape):
        raise ValueError(f"displacement {displacement.shape} does not match volume {volume.shape}")
    coords = np.indices(volume.shape, dtype=np.float64) + displacement
    warped = scipy.ndimage.map_coordinates(volume, coords, order=1, mode="grid-constant", cval=0.0)
    return warped.astype(np.float32, copy=False)
