"""``brainlossnet train``: train the registration network on synthetic and real longitudinal pairs.

Two kinds of training data, alone or mixed (``--real-fraction``):

* ``--scans``: head scans from which pairs are synthesised on the fly
  (:mod:`brainlossnet.deformation`). Each scan is prepared once into a 1 mm crop with the
  pipeline's own functions (reslice, intracranial mask, crop box) and cached as ``.npy``.
* ``--real-pairs``: output folders of the participant level run with
  ``--save-intermediates`` on a user's BIDS dataset: every pair that has a result record
  and its halfway crops is used as the paper used its 1525 pairs (unsupervised, in the
  pipeline's halfway space, so training sees exactly what inference sees). The normalised
  crops are cached as ``.npy`` and memory-mapped, so thousands of pairs need no RAM.

The network is trained by :func:`brainlossnet.training.train`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from brainlossnet.bids_app.derivatives import intermediate_paths, read_pair_records
from brainlossnet.deformation import TISSUE_CUTOFF, SynthesisRanges
from brainlossnet.geometry import CROP_SHAPE, crop, crop_box_start, reslice_to_isotropic
from brainlossnet.interfaces.nifti import load_image
from brainlossnet.intracranial import intracranial_mask
from brainlossnet.models.registration_unet import (
    MODEL_NAME,
    SHAPE_MULTIPLE,
    WEIGHTS_FILE,
    RegistrationConfig,
    normalize_intensity,
)
from brainlossnet.training import (
    MixedPairSource,
    PairSource,
    RealPairSource,
    SyntheticPairSource,
    TrainingConfig,
    new_model_and_optimizer,
    restore_state,
    train,
)


def _cache_key(path: Path, variant: object) -> str:
    """Cache file stem: the file's name plus a hash of its path, size, mtime and ``variant`` (e.g. the crop shape)."""
    stat = path.stat()
    token = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{variant}"
    digest = hashlib.sha256(token.encode()).hexdigest()[:12]
    return f"{path.name.split('.')[0]}_{digest}"


def _save_npy_atomic(array: np.ndarray, target: Path) -> None:
    """np.save to a temporary name, then rename (no half-written cache file)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.npy")
    np.save(partial, array)
    partial.replace(target)


def prepare_crop(
    path: Path, cache_dir: Path, crop_shape: tuple[int, int, int] = CROP_SHAPE
) -> tuple[np.ndarray, np.ndarray]:
    """The 1 mm crop of a head scan and its intracranial mask, cached as ``.npy``.

    Returns
    -------
    crop_image, crop_mask
        float32 intensities and the boolean intracranial mask, both ``crop_shape``.
    """
    stem = _cache_key(path, crop_shape)
    image_file, mask_file = cache_dir / f"{stem}_t1w.npy", cache_dir / f"{stem}_icv.npy"
    if image_file.exists() and mask_file.exists():
        return np.load(image_file), np.load(mask_file)
    arr, aff = reslice_to_isotropic(*load_image(path))
    mask = intracranial_mask(arr)
    start = crop_box_start(mask, crop_shape)
    crop_image, _ = crop(arr, aff, start, crop_shape)
    crop_mask, _ = crop(mask, aff, start, crop_shape)
    for target, array in ((image_file, crop_image.astype(np.float32)), (mask_file, crop_mask)):
        _save_npy_atomic(array, target)
    return crop_image.astype(np.float32), crop_mask.astype(bool)


@dataclasses.dataclass(frozen=True)
class RealPair:
    """A pair of a participant run's derivatives: its participant, sessions and halfway crops."""

    participant: str
    session_bl: str
    session_fu: str
    bl_halfway: Path
    fu_halfway: Path
    bl_intracranial: Path
    fu_intracranial: Path

    @property
    def label(self) -> str:
        """``sub-X BL->FU``, as messages name the pair."""
        return f"{self.participant} {self.session_bl}->{self.session_fu}"


def find_real_pairs(derivatives: Path) -> tuple[list[RealPair], list[str]]:
    """The pairs of a participant run's output folder that can be trained on.

    A pair qualifies when its ``_bvl.json`` says ``ok`` or ``flagged`` and its halfway crops
    and intracranial masks were saved (``--save-intermediates``).

    Returns
    -------
    pairs, problems
        The usable pairs, and one line per pair (or result file) left out, saying why.
    """
    problems: list[str] = []
    records = read_pair_records(derivatives, lambda path, why: problems.append(f"{path}: {why}"))
    pairs = []
    for record in records:
        subject = str(record["participant_id"]).removeprefix("sub-")
        session_bl, session_fu = str(record["session_bl"]), str(record["session_fu"])
        paths = intermediate_paths(derivatives, subject, session_bl, session_fu)
        pair = RealPair(f"sub-{subject}", session_bl, session_fu, paths["bl_halfway"], paths["fu_halfway"],
                        paths["bl_intracranial"], paths["fu_intracranial"])
        if record["status"] not in ("ok", "flagged"):
            problems.append(f"{derivatives}: {pair.label}: status {record['status']}, left out")
            continue
        missing = [paths[k].name for k in ("bl_halfway", "fu_halfway", "bl_intracranial", "fu_intracranial") if not paths[k].is_file()]
        if missing:
            problems.append(f"{derivatives}: {pair.label}: no {', '.join(missing)} (run the participant level "
                            "with --save-intermediates), left out")
            continue
        pairs.append(pair)
    return pairs, problems


def prepare_real_pair(pair: RealPair, cache_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised BL and FU halfway crops and the union of their cavity masks, memory-mapped from a ``.npy`` cache."""
    stem = _cache_key(pair.bl_halfway, ("real", pair.fu_halfway.name))
    files = {name: cache_dir / f"{stem}_{name}.npy" for name in ("bl", "fu", "icv")}
    if not all(f.exists() for f in files.values()):
        arrays = {
            "bl": normalize_intensity(load_image(pair.bl_halfway)[0]),
            "fu": normalize_intensity(load_image(pair.fu_halfway)[0]),
            "icv": (load_image(pair.bl_intracranial)[0] > 0) | (load_image(pair.fu_intracranial)[0] > 0),
        }
        for name, array in arrays.items():
            _save_npy_atomic(array, files[name])
    return tuple(np.load(files[name], mmap_mode="r") for name in ("bl", "fu", "icv"))  # type: ignore[return-value]


VALIDATION_COLUMNS = (
    "ncc_before",
    "ncc_after",
    "identity_error_mm",
    "field_error_mm",
    "tissue_change_true_pct",
    "tissue_change_pred_pct",
    "tissue_change_abs_error_pct",
    "tissue_change_slope",
)
VALIDATION_RANGES = dataclasses.replace(SynthesisRanges(), atrophy_fraction=(0.005, 0.03))
"""Validation pairs always lose 0.5-3 % of brain tissue, so the fraction of a known volume
change that the network recovers (the raw slope) is measurable."""
CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.json"


def build_parser() -> argparse.ArgumentParser:
    """Options of ``brainlossnet train``."""
    parser = argparse.ArgumentParser(
        prog="brainlossnet train",
        description="Train the registration network on synthetic longitudinal pairs made from head scans "
        "(resumes from OUTPUT_DIR/checkpoint.pt when present).",
    )
    parser.add_argument("--scans", nargs="+", type=Path, default=[], help="T1w head scans (NIfTI) to synthesise pairs from")
    parser.add_argument("--real-pairs", nargs="+", type=Path, default=[], metavar="DERIVATIVES",
                        help="output folders of 'brainlossnet BIDS OUT participant --save-intermediates': "
                        "their pairs' halfway crops are trained on (unsupervised, as in the paper)")
    parser.add_argument("--real-fraction", type=float, default=None,
                        help="share of training samples drawn from --real-pairs when --scans are given too "
                        "(default 0.5)")
    parser.add_argument("--holdout", nargs="*", default=[],
                        help="kept out of training and used for validation: file names among --scans, and "
                        "participants (sub-<label>) of --real-pairs")
    parser.add_argument("--cache-dir", type=Path, required=True, help="where the 1 mm crops are cached (.npy)")
    parser.add_argument("--output-dir", type=Path, required=True, help="checkpoints, history and logs of this run")
    parser.add_argument("--steps", type=int, default=1000, help="total optimiser steps (default 1000)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--smoothness-weight", type=float, default=1.0, help="lambda of the spatial-gradient penalty")
    parser.add_argument("--ncc-kernel", type=int, default=9, help="window of the local NCC in voxels")
    parser.add_argument("--field-weight", type=float, default=0.0,
                        help="weight of a supervised term, the squared error against the known field of "
                             "synthetic pairs (not in the paper; default 0 = the paper's unsupervised loss)")
    parser.add_argument("--patch-shape", nargs=3, type=int, default=[64, 80, 80], help="training patch (multiples of 16)")
    parser.add_argument("--rotate-deg", type=float, default=10.0, help="augmentation: max rotation per axis")
    parser.add_argument("--integration-steps", type=int, default=7, help="scaling-and-squaring steps; 0 = plain displacement")
    parser.add_argument("--correlation-radius", type=int, default=0,
                        help="0 = the paper's two-image input; r > 0 adds the pair's difference and local "
                             "correlation at every half-resolution shift up to r (a short CPU run learns with r = 1; "
                             "docs/training_notes.md, run 6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="network forward pass in bfloat16 autocast (GPUs with bfloat16; the loss stays float32)")
    parser.add_argument("--validate-every", type=int, default=100)
    parser.add_argument("--validation-pairs", type=int, default=2)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--max-minutes", type=float, default=None, help="stop (with a checkpoint) after this much wall time")
    parser.add_argument("--export", type=Path, default=None, help="write the final weights and MODEL_CARD.md into this folder")
    parser.add_argument("--export-only", action="store_true", help="do not train; export OUTPUT_DIR's checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _hardware(device: torch.device) -> str:
    """One line naming the processor the run used."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}, {torch.get_num_threads()} torch thread(s)"


def _save_atomic(payload: object, target: Path) -> None:
    """torch.save to a temporary name, then rename (no half-written checkpoint)."""
    partial = target.with_name(target.name + ".partial")
    torch.save(payload, partial)
    partial.replace(target)


def _load_crops(paths: list[Path], cache_dir: Path, crop_shape: tuple[int, int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Normalised crops and intracranial masks of ``paths`` (prepared once, then cached)."""
    crops = []
    for path in paths:
        image, mask = prepare_crop(path, cache_dir, crop_shape)
        crops.append((normalize_intensity(image), mask))
    return crops


def export_weights(checkpoint: dict[str, object], target_dir: Path) -> Path:
    """Write the weights of a checkpoint (float32 state dict + config + run metadata) and its model card."""
    target_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in checkpoint["model"].items()}  # type: ignore[union-attr]
    run = checkpoint.get("run", {})
    history = checkpoint["history"]
    validation = history["validation"][-1] if history["validation"] else {}  # type: ignore[index]
    payload = {
        "state_dict": state,
        "config": checkpoint["model_config"],
        # plain JSON types only, so that the pipeline can load the file with weights_only=True
        "metadata": json.loads(json.dumps({"step": checkpoint["step"], "validation": validation, "run": run}, default=str)),
    }
    weights_file = target_dir / WEIGHTS_FILE
    _save_atomic(payload, weights_file)
    digest = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    (target_dir / "MODEL_CARD.md").write_text(_model_card(checkpoint, digest, weights_file.stat().st_size))
    return weights_file


def _model_card(checkpoint: dict[str, object], digest: str, size_bytes: int) -> str:
    """Markdown model card: identity, architecture, data, command, hardware, metrics."""
    run = dict(checkpoint.get("run", {}))  # type: ignore[arg-type]
    history = checkpoint["history"]
    training = checkpoint["training_config"]
    validation = history["validation"]  # type: ignore[index]
    losses = history["loss"]  # type: ignore[index]
    rows = "\n".join(
        f"| {int(record['step'])} | "
        + " | ".join(f"{record.get(k, float('nan')):.4f}" for k in VALIDATION_COLUMNS)
        + " |"
        for record in validation
    )
    tail = losses[-50:]
    real = dict(run.get("real_pairs", {}))
    return f"""# Registration network weights: `{WEIGHTS_FILE}`

- Model version: `{MODEL_NAME}+{digest[:12]}` (SHA-256 `{digest}`, {size_bytes / 1e6:.2f} MB)
- Architecture: `brainlossnet.models.registration_unet.RegistrationUNet`, config `{json.dumps(checkpoint["model_config"])}`:
  the pair is average-pooled 2x (with `correlation_radius_vox` > 0 joined by its difference and local
  correlation volume), MONAI's VoxelMorph U-Net predicts a stationary velocity field at
  half resolution, integrated by scaling and squaring, upsampled trilinearly to full resolution.
  Output: displacement in voxels, pull-back (`moving(x + u(x)) ≈ fixed(x)`).
- Input: two 1 mm crops (every axis a multiple of 16), each normalised by `normalize_intensity`
  (99.5th percentile of positive voxels -> 1).

## Training

- Command: `{run.get("command", "?")}`
- Steps: {int(checkpoint["step"])} of {training["steps"]} (batch {training["batch_size"]}, Adam lr {training["learning_rate"]},
  smoothness weight {training["smoothness_weight"]}, local NCC window {training["ncc_kernel_vox"]},
  supervised field weight {training.get("field_weight", 0.0)}, seed {training["seed"]})
- Wall time: {float(run.get("wall_s", 0.0)) / 60:.1f} min on {run.get("hardware", "?")}
- Training scans (synthetic BL/FU pairs made on the fly by `brainlossnet.deformation.synthesize_pair`:
  random smooth + rigid + atrophy-like deformation with known truth, own gain/bias/noise per image,
  left-right flip and rotation, random direction swap): {", ".join(run.get("train_scans", [])) or "none"}
- Real BL/FU pairs in halfway space (unsupervised; same augmentation, noise per image):
  {real.get("train", 0)} from {", ".join(real.get("folders", [])) or "none"}, {100 * float(real.get("fraction", 0.0)):.0f} % of the samples
- Held out for validation (never trained on): {", ".join([*run.get("holdout_scans", []), *real.get("holdout", [])]) or "none"}
- Mixed precision (bfloat16 forward pass): {"yes" if training.get("mixed_precision") else "no"}
- Mean training loss over the last {len(tail)} steps: {float(np.mean(tail)) if tail else float("nan"):.4f}

## Validation (held-out pairs, whole 176x208x208 crops)

NCC: mean local NCC of the fixed image with the moving image before / after warping, over
every validation pair (synthetic pairs of the held-out scans and held-out real pairs). The
other columns need a known field and come from the synthetic pairs only.
Field error: mean Euclidean distance (mm) between predicted and true displacement inside the
intracranial mask; "identity" is that error for a zero field. Tissue change: percent volume
change of a tissue proxy (intensity above {TISSUE_CUTOFF} x the cavity's median) warped by the
true / the predicted field (paper Eq. 1), mean over pairs, the mean absolute difference per pair,
and the least-squares slope (through 0) of predicted on true change.

| step | NCC before | NCC after | identity error (mm) | field error (mm) | tissue change true (%) | predicted (%) | abs. error (%) | slope |
|---|---|---|---|---|---|---|---|---|
{rows}

## At inference

The pipeline refines the network's prediction on each pair (inverse-consistent test-time
refinement, `--refine-steps`) and reads volumes by Jacobian integration; how accurately these
weights then measure a known change is measured by `benchmarks/refinement.py` and
`benchmarks/accuracy.py` (docs/registration.md).

## Limits

Trained on synthetic deformations of a few heads on a CPU for a short time; not yet checked
against real longitudinal pairs or a reference method. Retrain or fine-tune with
`brainlossnet train` (see docs/training_notes.md).
"""


def main(argv: list[str]) -> int:
    """Run ``brainlossnet train``; returns a process exit code (0 ok, 64 usage, 66 input missing)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse: 0 after --help, 2 on a usage error
        return 0 if exit_.code in (0, None) else 64
    torch.set_num_threads(args.threads)
    device = _device(args.device)
    checkpoint_file = args.output_dir / CHECKPOINT_NAME

    if args.export_only:
        if args.export is None or not checkpoint_file.exists():
            print(f"brainlossnet train: --export-only needs --export and {checkpoint_file}", file=sys.stderr)
            return 64
        checkpoint = torch.load(checkpoint_file, map_location="cpu", weights_only=False)
        print(f"exported {export_weights(checkpoint, args.export)} (step {checkpoint['step']})")
        return 0

    if not args.scans and not args.real_pairs:
        print("brainlossnet train: --scans or --real-pairs is required (unless --export-only)", file=sys.stderr)
        return 64
    missing = [str(p) for p in [*args.scans, *args.real_pairs] if not p.exists()]
    if missing:
        print(f"brainlossnet train: not found: {', '.join(missing)}", file=sys.stderr)
        return 66
    if args.real_fraction is not None and not (args.real_pairs and args.scans and 0.0 < args.real_fraction < 1.0):
        print("brainlossnet train: --real-fraction needs --scans and --real-pairs and lies strictly between 0 and 1",
              file=sys.stderr)
        return 64
    real_pairs: list[RealPair] = []
    for derivatives in args.real_pairs:
        found, problems = find_real_pairs(derivatives)
        for problem in problems:
            print(f"brainlossnet train: warning: {problem}", file=sys.stderr)
        if not found:
            print(f"brainlossnet train: {derivatives}: no pair with saved halfway crops (run the participant "
                  "level with --save-intermediates)", file=sys.stderr)
            return 66
        real_pairs.extend(found)
    holdout = set(args.holdout)
    unknown = holdout - {p.name for p in args.scans} - {p.participant for p in real_pairs}
    if unknown:
        print(f"brainlossnet train: --holdout names no scan in --scans and no participant of --real-pairs: "
              f"{', '.join(sorted(unknown))}", file=sys.stderr)
        return 64
    patch = tuple(args.patch_shape)
    if any(n % SHAPE_MULTIPLE for n in patch) or any(n > c for n, c in zip(patch, CROP_SHAPE)):
        print(f"brainlossnet train: --patch-shape must be multiples of {SHAPE_MULTIPLE} within {CROP_SHAPE}", file=sys.stderr)
        return 64
    train_paths = [p for p in args.scans if p.name not in holdout]
    holdout_paths = [p for p in args.scans if p.name in holdout]
    train_real = [p for p in real_pairs if p.participant not in holdout]
    holdout_real = [p for p in real_pairs if p.participant in holdout]
    if not train_paths and not train_real:
        print("brainlossnet train: every scan and pair is held out", file=sys.stderr)
        return 64

    config = TrainingConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        smoothness_weight=args.smoothness_weight,
        ncc_kernel_vox=args.ncc_kernel,
        field_weight=args.field_weight,
        seed=args.seed,
        validate_every=args.validate_every,
        checkpoint_every=args.checkpoint_every,
        max_minutes=args.max_minutes,
        mixed_precision=args.mixed_precision,
    )
    sources: list[PairSource] = []
    weights: list[float] = []
    real_fraction = args.real_fraction if args.real_fraction is not None else 0.5
    if train_paths:
        sources.append(SyntheticPairSource(
            _load_crops(train_paths, args.cache_dir, CROP_SHAPE), args.seed, patch_shape=patch, rotate_deg=args.rotate_deg
        ))
        weights.append(1.0 - real_fraction if train_real else 1.0)
    if train_real:
        sources.append(RealPairSource(
            [prepare_real_pair(p, args.cache_dir) for p in train_real], args.seed + 2, patch_shape=patch,
            rotate_deg=args.rotate_deg,
        ))
        weights.append(real_fraction if train_paths else 1.0)
    source = sources[0] if len(sources) == 1 else MixedPairSource(sources, weights, args.seed + 3)
    validation_pairs = []
    if holdout_paths:
        held = SyntheticPairSource(
            _load_crops(holdout_paths, args.cache_dir, CROP_SHAPE),
            args.seed + 1,
            rotate_deg=None,
            swap_probability=0.0,
            ranges=VALIDATION_RANGES,
        )
        validation_pairs = [held.sample(i) for i in range(args.validation_pairs)]
    validation_pairs += [
        RealPairSource([prepare_real_pair(p, args.cache_dir)], args.seed, rotate_deg=None, swap_probability=0.0,
                       noise_std=0.0).sample(0)
        for p in holdout_real[: args.validation_pairs]
    ]

    args.output_dir.mkdir(parents=True, exist_ok=True)
    previous_wall_s = 0.0
    if checkpoint_file.exists():
        state = torch.load(checkpoint_file, map_location="cpu", weights_only=False)
        model, optimizer, start_step, history = restore_state(state, device)
        previous_wall_s = float(state.get("run", {}).get("wall_s", 0.0))
        print(f"resuming from {checkpoint_file} at step {start_step}")
    else:
        model_config = RegistrationConfig(integration_steps=args.integration_steps,
                                          correlation_radius_vox=args.correlation_radius)
        model, optimizer = new_model_and_optimizer(model_config, config, device)
        start_step, history = 0, None

    started = time.monotonic()
    run = {
        "command": "brainlossnet train " + " ".join(shlex.quote(a) for a in argv),
        "hardware": _hardware(device),
        "train_scans": [p.name for p in train_paths],
        "holdout_scans": [p.name for p in holdout_paths],
        "real_pairs": {"folders": [str(d) for d in args.real_pairs], "train": len(train_real),
                       "holdout": [p.label for p in holdout_real[: args.validation_pairs]],
                       "fraction": (real_fraction if train_paths else 1.0) if train_real else 0.0},
        "torch": str(torch.__version__),
    }

    def on_checkpoint(state: dict[str, object]) -> None:
        state["run"] = run | {"wall_s": previous_wall_s + time.monotonic() - started}
        _save_atomic(state, checkpoint_file)
        partial = args.output_dir / (HISTORY_NAME + ".partial")
        partial.write_text(json.dumps({"run": state["run"], "step": state["step"], "history": state["history"]}, indent=1))
        partial.replace(args.output_dir / HISTORY_NAME)

    history = train(
        model,
        optimizer,
        source,
        config,
        start_step=start_step,
        history=history,
        validation_pairs=validation_pairs,
        on_checkpoint=on_checkpoint,
        progress=not args.no_progress,
    )
    if history.validation:
        print("final validation: " + json.dumps(history.validation[-1]))
    if history.skipped_steps:
        print(f"{len(history.skipped_steps)} of {len(history.loss)} updates skipped for non-finite gradients")
    if args.export is not None:
        checkpoint = torch.load(checkpoint_file, map_location="cpu", weights_only=False)
        print(f"exported {export_weights(checkpoint, args.export)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
