"""Unsupervised training of the registration network (paper, "Non-linear registration").

Loss = local normalised cross-correlation of the warped moving image with the fixed image
(MONAI ``LocalNormalizedCrossCorrelationLoss``) + ``smoothness_weight`` x mean squared
spatial gradient of the displacement (MONAI ``DiffusionLoss``); Adam, learning rate 1e-4,
batch size 2. Optionally (``field_weight`` > 0, off by default and not in the paper) a
supervised term, the mean squared error of the predicted against the known field of a
synthetic pair inside its intracranial mask, the shortcut of SynthMorph-style training (on
the CPU it has not yet made a network beat a zero field: docs/training_notes.md, run 5).
Augmentation: left-right flip and rotation (same for both images; done by the pair source),
Gaussian noise on each image (pair source) and a random swap of the direction (here).

Training pairs come from a :class:`PairSource`: random access by sample index, so a pair is
a pure function of (source seed, index), and resuming at step ``k`` continues with exactly
the pairs a run without interruption would have seen. :class:`SyntheticPairSource` makes
pairs from crops (:mod:`brainlossnet.deformation`), :class:`RealPairSource` serves real BL/FU
pairs in halfway space (the paper's training data), and :class:`MixedPairSource` draws each
sample from one of several sources.

Mixed precision (``TrainingConfig.mixed_precision``): the network's forward pass runs under
bfloat16 autocast, the loss in float32 (local NCC divides small variances); an update whose
gradients are not finite is skipped (:func:`gradients_are_finite`).

No file I/O here: checkpoints are handed to a callback as plain state dicts.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np
import torch
from monai.losses import DiffusionLoss, LocalNormalizedCrossCorrelationLoss
from tqdm import tqdm

from brainlossnet.deformation import (
    SynthesisRanges,
    augment_real_pair,
    prepare_source_crop,
    synthesize_pair,
    tissue_probability,
)
from brainlossnet.models.registration_unet import RegistrationConfig, RegistrationUNet, make_warp


@dataclass(frozen=True)
class PairSample:
    """One training or validation pair: (1, X, Y, Z) images with normalised intensities.

    ``displacement`` is the known moving->fixed field (3, X, Y, Z) in voxels when the pair is
    synthetic (``None`` for real pairs) and ``mask`` the region where it is scored.
    """

    moving: torch.Tensor
    fixed: torch.Tensor
    displacement: torch.Tensor | None = None
    mask: torch.Tensor | None = None


class PairSource(Protocol):
    """Random-access supply of pairs: ``sample(i)`` is deterministic in ``i``."""

    def sample(self, index: int) -> PairSample:
        """The ``index``-th pair."""
        ...


def _sample_generator(seed: int, index: int) -> torch.Generator:
    """A generator seeded by (seed, index), independent across indices."""
    mixed = (int(seed) * 0x9E3779B97F4A7C15 + int(index) * 0xBF58476D1CE4E5B9) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


class SyntheticPairSource:
    """Synthetic longitudinal pairs from 1 mm crops (:func:`~brainlossnet.deformation.synthesize_pair`).

    Parameters
    ----------
    crops
        (image, intracranial mask) per person, each (X, Y, Z); images already normalised
        (:func:`brainlossnet.registration.normalize_intensity`).
    seed
        Seed of the pair sequence.
    patch_shape
        Random sub-box per pair (multiples of 16), ``None`` for whole crops.
    rotate_deg
        Augmentation: random left-right flip and rotation up to this angle (``None``: off).
    swap_probability
        Chance that a pair is returned FU->BL (then its true field is unknown and dropped).
    """

    def __init__(
        self,
        crops: Sequence[tuple[np.ndarray, np.ndarray]],
        seed: int,
        *,
        patch_shape: tuple[int, int, int] | None = None,
        rotate_deg: float | None = 10.0,
        swap_probability: float = 0.5,
        ranges: SynthesisRanges = SynthesisRanges(),
    ) -> None:
        if not crops:
            raise ValueError("no crops to synthesise pairs from")
        self.crops = [
            prepare_source_crop(torch.from_numpy(np.asarray(image, dtype=np.float32)), torch.from_numpy(np.asarray(mask, dtype=bool)), ranges)
            for image, mask in crops
        ]
        self.seed = seed
        self.patch_shape = patch_shape
        self.rotate_deg = rotate_deg
        self.swap_probability = swap_probability
        self.ranges = ranges

    def sample(self, index: int) -> PairSample:
        """The ``index``-th pair (a crop chosen at random, then synthesised)."""
        generator = _sample_generator(self.seed, index)
        person = int(torch.randint(0, len(self.crops), (1,), generator=generator))
        pair = synthesize_pair(
            self.crops[person],
            generator,
            patch_shape=self.patch_shape,
            flip_and_rotate_deg=self.rotate_deg,
            ranges=self.ranges,
        )
        if bool(torch.rand((), generator=generator) < self.swap_probability):
            return PairSample(pair.followup[None], pair.baseline[None], None, pair.icv_mask)
        return PairSample(pair.baseline[None], pair.followup[None], pair.displacement, pair.icv_mask)


class RealPairSource:
    """Real longitudinal pairs, e.g. a user's BL/FU scans already in the pipeline's halfway space.

    Their true field is unknown, so training on them is purely unsupervised, as in the
    paper. Each sample takes one pair at random and augments it
    (:func:`~brainlossnet.deformation.augment_real_pair`: same patch, flip and rotation for
    both images, noise for each), then swaps its direction with ``swap_probability``.

    Parameters
    ----------
    pairs
        (baseline, followup, intracranial mask) per pair, each (X, Y, Z) on one grid, images
        normalised (:func:`brainlossnet.registration.normalize_intensity`). Memory-mapped
        arrays are read only where a sample needs them.
    seed, patch_shape, rotate_deg, swap_probability
        As for :class:`SyntheticPairSource`.
    noise_std
        Upper bound of each image's Gaussian noise (normalised intensity units).
    """

    def __init__(
        self,
        pairs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
        seed: int,
        *,
        patch_shape: tuple[int, int, int] | None = None,
        rotate_deg: float | None = 10.0,
        swap_probability: float = 0.5,
        noise_std: float = SynthesisRanges().noise_std,
    ) -> None:
        if not pairs:
            raise ValueError("no real pairs to train on")
        for index, (baseline, followup, mask) in enumerate(pairs):
            if not (np.shape(baseline) == np.shape(followup) == np.shape(mask)):
                raise ValueError(f"real pair {index}: BL, FU and mask shapes differ "
                                 f"({np.shape(baseline)}, {np.shape(followup)}, {np.shape(mask)})")
        self.pairs = list(pairs)
        self.seed = seed
        self.patch_shape = patch_shape
        self.rotate_deg = rotate_deg
        self.swap_probability = swap_probability
        self.noise_std = noise_std

    def sample(self, index: int) -> PairSample:
        """The ``index``-th sample: a pair chosen at random, augmented, maybe swapped."""
        generator = _sample_generator(self.seed, index)
        baseline, followup, mask = self.pairs[int(torch.randint(0, len(self.pairs), (1,), generator=generator))]
        moving, fixed, mask_here = augment_real_pair(
            torch.from_numpy(np.array(baseline, dtype=np.float32)),  # a copy: memory maps are read-only
            torch.from_numpy(np.array(followup, dtype=np.float32)),
            torch.from_numpy(np.array(mask, dtype=bool)),
            generator,
            patch_shape=self.patch_shape,
            flip_and_rotate_deg=self.rotate_deg,
            noise_std=self.noise_std,
        )
        if bool(torch.rand((), generator=generator) < self.swap_probability):
            moving, fixed = fixed, moving
        return PairSample(moving[None], fixed[None], None, mask_here)


class MixedPairSource:
    """Each sample from one of several sources, chosen at random with the given weights.

    The chosen source is asked for the same ``index``; sources with different seeds give
    independent pairs, and the choice is a pure function of (``seed``, ``index``).
    """

    def __init__(self, sources: Sequence[PairSource], weights: Sequence[float], seed: int) -> None:
        if len(sources) != len(weights) or not sources:
            raise ValueError("give one weight per source, and at least one source")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"source weights must be >= 0 with a positive sum, got {list(weights)}")
        self.sources = list(sources)
        self.cumulative = np.cumsum(np.asarray(weights, dtype=float) / float(sum(weights)))
        self.seed = seed

    def sample(self, index: int) -> PairSample:
        """The ``index``-th sample of the source drawn for ``index``."""
        draw = float(torch.rand((), generator=_sample_generator(self.seed, index), dtype=torch.float64))
        chosen = min(int(np.searchsorted(self.cumulative, draw, side="right")), len(self.sources) - 1)
        return self.sources[chosen].sample(index)


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of :func:`train` (paper: Adam, lr 1e-4, batch size 2)."""

    steps: int = 1000
    batch_size: int = 2
    learning_rate: float = 1e-4
    smoothness_weight: float = 1.0
    ncc_kernel_vox: int = 9
    field_weight: float = 0.0
    seed: int = 0
    validate_every: int = 100
    checkpoint_every: int = 50
    max_minutes: float | None = None
    mixed_precision: bool = False


@dataclass
class TrainingHistory:
    """Per-step losses, the validation records and the steps skipped for non-finite gradients."""

    loss: list[float] = field(default_factory=list)
    validation: list[dict[str, float]] = field(default_factory=list)
    skipped_steps: list[int] = field(default_factory=list)


class RegistrationLoss(torch.nn.Module):
    """``-LNCC(moving∘(id+u), fixed) + smoothness_weight * mean |∇u|² + field_weight * field MSE``.

    The field term is the mean squared difference (voxels²) between the predicted and the
    known displacement over the voxels of ``truth_region``; it is zero when no sample of the
    batch has a known field (real or swapped pairs).
    """

    def __init__(self, smoothness_weight: float, ncc_kernel_vox: int, field_weight: float = 0.0) -> None:
        super().__init__()
        self.smoothness_weight = smoothness_weight
        self.field_weight = field_weight
        self.ncc = LocalNormalizedCrossCorrelationLoss(spatial_dims=3, kernel_size=ncc_kernel_vox)
        self.smoothness = DiffusionLoss()
        self.warp = make_warp(padding_mode="zeros")

    def forward(
        self,
        moving: torch.Tensor,
        fixed: torch.Tensor,
        displacement: torch.Tensor,
        truth: torch.Tensor | None = None,
        truth_region: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Total loss, the similarity term (negative mean local NCC), the smoothness and the field term."""
        similarity = self.ncc(self.warp(moving, displacement), fixed)
        with warnings.catch_warnings():  # MONAI's finite differences index with a list (deprecated, same result)
            warnings.filterwarnings("ignore", message="Using a non-tuple sequence")
            smoothness = self.smoothness(displacement)
        field_error = displacement.new_zeros(())
        if truth is not None and truth_region is not None and bool(truth_region.any()):
            squared = ((displacement - truth) ** 2).sum(dim=1, keepdim=True)
            field_error = squared[truth_region].mean()
        total = similarity + self.smoothness_weight * smoothness + self.field_weight * field_error
        return total, similarity, smoothness, field_error


def collate(samples: Sequence[PairSample], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack samples into (B, 1, X, Y, Z) moving and fixed batches on ``device``."""
    moving = torch.stack([s.moving for s in samples]).to(device)
    fixed = torch.stack([s.fixed for s in samples]).to(device)
    return moving, fixed


def collate_truth(samples: Sequence[PairSample], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Known fields (B, 3, X, Y, Z; zero where unknown) and where they count (B, 1, X, Y, Z, bool).

    A sample counts inside its mask when it has a known field and nowhere otherwise.
    """
    shape = samples[0].moving.shape[1:]
    truth = torch.stack([s.displacement if s.displacement is not None else torch.zeros((3, *shape)) for s in samples])
    region = torch.stack([
        (s.mask if s.mask is not None else torch.ones(shape, dtype=torch.bool))[None]
        if s.displacement is not None
        else torch.zeros((1, *shape), dtype=torch.bool)
        for s in samples
    ])
    return truth.to(device), region.to(device)


def training_state(
    model: RegistrationUNet,
    optimizer: torch.optim.Optimizer,
    step: int,
    config: TrainingConfig,
    history: TrainingHistory,
) -> dict[str, object]:
    """Everything needed to resume: weights, optimiser, step, configs, history and RNG states."""
    return {
        "model": model.state_dict(),
        "model_config": model.config.to_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "training_config": asdict(config),
        "history": asdict(history),
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        },
    }


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python and make torch pick deterministic kernels."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def new_model_and_optimizer(
    model_config: RegistrationConfig, config: TrainingConfig, device: torch.device
) -> tuple[RegistrationUNet, torch.optim.Adam]:
    """A freshly initialised network (seeded by ``config.seed``) and its Adam optimiser."""
    seed_everything(config.seed)
    model = RegistrationUNet(model_config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    return model, optimizer


def restore_state(
    state: dict[str, object], device: torch.device
) -> tuple[RegistrationUNet, torch.optim.Adam, int, TrainingHistory]:
    """Inverse of :func:`training_state`: model, optimiser, next step and history (RNGs restored)."""
    config = TrainingConfig(**state["training_config"])  # type: ignore[arg-type]
    model = RegistrationUNet(RegistrationConfig.from_dict(state["model_config"])).to(device)  # type: ignore[arg-type]
    model.load_state_dict(state["model"])  # type: ignore[arg-type]
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])  # type: ignore[index]
    np.random.set_state(rng["numpy"])  # type: ignore[index]
    random.setstate(rng["python"])  # type: ignore[index]
    torch.use_deterministic_algorithms(True, warn_only=True)
    history = TrainingHistory(**state["history"])  # type: ignore[arg-type]
    return model, optimizer, int(state["step"]), history  # type: ignore[arg-type]


def validate(model: RegistrationUNet, pairs: Sequence[PairSample], ncc_kernel_vox: int = 9) -> dict[str, float]:
    """Mean local NCC before/after warping and, where the truth is known, field and volume errors.

    ``field_error_mm`` is the mean Euclidean distance between the predicted and the true
    displacement inside the pair's mask (1 mm voxels); ``identity_error_mm`` the same for a
    zero field, the error the network starts from. ``tissue_change_true_pct`` and
    ``tissue_change_pred_pct`` are the mean percent volume changes of a tissue proxy (moving
    image's :func:`~brainlossnet.deformation.tissue_probability` above 1/2) warped by the true and by the
    predicted field, as in the paper's Eq. 1; ``tissue_change_abs_error_pct`` their mean
    absolute difference per pair; ``tissue_change_slope`` the least-squares slope through the
    origin of predicted on true change, the raw slope that DESIGN's accuracy paragraph asks to
    be near 1.
    """
    device = next(model.parameters()).device
    ncc = LocalNormalizedCrossCorrelationLoss(spatial_dims=3, kernel_size=ncc_kernel_vox)
    warp = make_warp(padding_mode="zeros")
    before, after, errors, identity, change_true, change_pred = [], [], [], [], [], []
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for pair in pairs:
            moving, fixed = collate([pair], device)
            displacement = model(moving, fixed)
            before.append(-float(ncc(moving, fixed)))
            after.append(-float(ncc(warp(moving, displacement), fixed)))
            if pair.displacement is not None and pair.mask is not None:
                truth = pair.displacement.to(device)[None]
                region = pair.mask.to(device)
                errors.append(float(torch.linalg.norm(displacement[0] - truth[0], dim=0)[region].mean()))
                identity.append(float(torch.linalg.norm(truth[0], dim=0)[region].mean()))
                tissue = (tissue_probability(moving[0, 0], region) > 0.5).double()[None, None]
                volume = float(tissue.sum())
                change_true.append(100.0 * (float(warp(tissue, truth.double()).sum()) - volume) / volume)
                change_pred.append(100.0 * (float(warp(tissue, displacement.double()).sum()) - volume) / volume)
    model.train(was_training)
    record = {"ncc_before": float(np.mean(before)), "ncc_after": float(np.mean(after))}
    if errors:
        record |= {
            "field_error_mm": float(np.mean(errors)),
            "identity_error_mm": float(np.mean(identity)),
            "tissue_change_true_pct": float(np.mean(change_true)),
            "tissue_change_pred_pct": float(np.mean(change_pred)),
            "tissue_change_abs_error_pct": float(np.mean(np.abs(np.subtract(change_pred, change_true)))),
            "tissue_change_slope": float(np.dot(change_pred, change_true) / max(np.dot(change_true, change_true), 1e-12)),
        }
    return record


def gradients_are_finite(model: torch.nn.Module) -> bool:
    """Whether every gradient of ``model`` is finite (a step on a NaN would ruin the weights).

    With bfloat16 autocast on the CPU, torch's convolution backward occasionally returns NaN
    (about one run in eight of a two-step toy training, torch 2.13); like a gradient scaler,
    :func:`train` then skips that update instead of writing NaN into every weight.
    """
    gradients = [p.grad for p in model.parameters() if p.grad is not None]
    return bool(torch.stack([torch.isfinite(g).all() for g in gradients]).all()) if gradients else True


def train(
    model: RegistrationUNet,
    optimizer: torch.optim.Optimizer,
    source: PairSource,
    config: TrainingConfig,
    *,
    start_step: int = 0,
    history: TrainingHistory | None = None,
    validation_pairs: Sequence[PairSample] = (),
    on_checkpoint: Callable[[dict[str, object]], None] | None = None,
    progress: bool = True,
) -> TrainingHistory:
    """Train from ``start_step`` to ``config.steps`` (or until ``config.max_minutes`` pass).

    Step ``k`` uses samples ``k * batch_size ...`` of ``source``. Every
    ``config.validate_every`` steps (and at the end) the model is scored on
    ``validation_pairs``; every ``config.checkpoint_every`` steps (and at the end) the full
    state (:func:`training_state`) is passed to ``on_checkpoint``. An update whose gradients
    are not finite is skipped and its step recorded in ``history.skipped_steps``
    (:func:`gradients_are_finite`).
    """
    history = history or TrainingHistory()
    device = next(model.parameters()).device
    loss_fn = RegistrationLoss(config.smoothness_weight, config.ncc_kernel_vox, config.field_weight).to(device)
    deadline = time.monotonic() + 60.0 * config.max_minutes if config.max_minutes is not None else math.inf
    model.train()
    step = start_step
    bar = tqdm(total=config.steps, initial=start_step, disable=not progress, desc="train", unit="step")
    while step < config.steps and time.monotonic() < deadline:
        samples = [source.sample(step * config.batch_size + i) for i in range(config.batch_size)]
        moving, fixed = collate(samples, device)
        truth, truth_region = collate_truth(samples, device) if config.field_weight > 0 else (None, None)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.mixed_precision):
            displacement = model(moving, fixed)
        loss, similarity, smoothness, field_error = loss_fn(moving, fixed, displacement.float(), truth, truth_region)
        loss.backward()
        if gradients_are_finite(model):
            optimizer.step()
        else:
            history.skipped_steps.append(step)
            bar.write(f"step {step + 1}: a gradient is not finite; the update was skipped")
        step += 1
        history.loss.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", ncc=f"{-similarity.item():.4f}", grad=f"{smoothness.item():.2e}",
                        field=f"{field_error.item():.3f}")
        if validation_pairs and (step % config.validate_every == 0 or step == config.steps):
            record = {"step": float(step)} | validate(model, validation_pairs, config.ncc_kernel_vox)
            history.validation.append(record)
            bar.write(" ".join(f"{k}={v:.4f}" for k, v in record.items()))
        if on_checkpoint is not None and step % config.checkpoint_every == 0:
            on_checkpoint(training_state(model, optimizer, step, config, history))
    bar.close()
    if validation_pairs and (not history.validation or history.validation[-1]["step"] != step):
        history.validation.append({"step": float(step)} | validate(model, validation_pairs, config.ncc_kernel_vox))
    if on_checkpoint is not None:
        on_checkpoint(training_state(model, optimizer, step, config, history))
    return history
