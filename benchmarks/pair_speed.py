"""Time and memory of each stage and of the whole pair, on a pair made from a real scan.

The pair: BL is a real head scan; FU is the same scan moved rigidly (2 degrees, 1.5 mm),
resampled once onto a larger grid, with its own noise (a rescan, no atrophy). Each stage
runs in a fresh worker process, several times; the table gives the median time, the peak
resident memory of that worker (not counting the child process in which the rigid stage
runs its second registration), and each stage's share of the summed pipeline. The whole
pair is then run through the Pydra workflow (cf worker) with a fresh cache each time;
``in pair s`` is the median time of each stage inside those whole-pair runs.

    python benchmarks/pair_speed.py ../shared/data/chris_t1.nii.gz --repeats 3 --nprocs 2

``--refine-fine-steps 0 --calibration pooled`` times the release before 2026-12-07 (the
refinement on pooled images alone), for a comparison on the same machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from brainlossnet import geometry
from brainlossnet.calibration import DEFAULT_PROFILE
from brainlossnet.registration import REFINE_FINE_STEPS


def make_rescan(source: Path, out_file: Path, seed: int = 0) -> Path:
    """The scan moved rigidly and resampled once onto a 20-voxel-padded grid, plus noise."""
    image = nib.load(str(source))
    data = image.get_fdata(dtype=np.float32)
    angle = np.deg2rad(2.0)
    move = np.eye(4)
    move[:3, :3] = [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    move[:3, 3] = [1.5, -1.0, 0.5]
    padded_shape = tuple(n + 40 for n in data.shape)
    padded_affine = image.affine.copy()
    padded_affine[:3, 3] -= image.affine[:3, :3] @ np.full(3, 20.0)
    moved = geometry.resample(data, image.affine, padded_shape, padded_affine, world_transform=move, order=3)
    rng = np.random.default_rng(seed)
    moved += rng.normal(0, 0.01 * np.percentile(data, 99), moved.shape).astype(np.float32)
    nib.save(nib.Nifti1Image(np.clip(moved, 0, None), padded_affine), str(out_file))
    return out_file


def _stage_worker(stage: str, kwargs: dict, folder: str, queue) -> None:
    os.chdir(folder)
    from brainlossnet.interfaces import halfway, preprocess, register, segment, volumes

    function = {
        "reslice": preprocess.reslice, "crop": preprocess.crop, "rigid_halfway": halfway.rigid_halfway,
        "segment": segment.segment, "register": register.register,
        "volumes": volumes.measure_volumes, "correct": volumes.correct,
    }[stage]
    start = time.perf_counter()
    outputs = function(**kwargs)
    elapsed_s = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((outputs[:-1], elapsed_s, peak_mib))


def run_stage(stage: str, folder: Path, **kwargs):
    """Run one stage in a fresh process; return its outputs, seconds and peak memory (MiB)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    folder.mkdir(parents=True, exist_ok=True)
    process = context.Process(target=_stage_worker, args=(stage, kwargs, str(folder), queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def one_pass(bl: Path, fu: Path, scratch: Path, device: str, refine_fine_steps: int,
             calibration: str) -> dict[str, tuple[float, float]]:
    """Every stage once, BL/FU and forward/backward stages counted together."""
    from brainlossnet.calibration import profile_path

    timings: dict[str, list[tuple[float, float]]] = {}

    def stage(name: str, label: str, **kwargs):
        outputs, seconds, peak = run_stage(name, scratch / label, **kwargs)
        timings.setdefault(name, []).append((seconds, peak))
        return outputs

    crops = {}
    for session, scan in (("bl", bl), ("fu", fu)):
        (resliced,) = stage("reslice", f"reslice_{session}", in_file=scan)
        crops[session] = stage("crop", f"crop_{session}", in_file=resliced)
    bl_half, fu_half, bl_tiv, fu_tiv, _ = stage(
        "rigid_halfway", "halfway", bl_crop=crops["bl"][0], fu_crop=crops["fu"][0], bl_source=bl, fu_source=fu,
        bl_crop_mask=crops["bl"][1], fu_crop_mask=crops["fu"][1],
    )
    (bl_tissue,) = stage("segment", "segment_bl", in_file=bl_half, intracranial=bl_tiv)
    (fu_tissue,) = stage("segment", "segment_fu", in_file=fu_half, intracranial=fu_tiv)
    field_fw, field_bw, _ = stage("register", "register", bl=bl_half, fu=fu_half, device=device,
                                  refine_fine_steps=refine_fine_steps)
    (volumes_file,) = stage("volumes", "volumes", bl_parenchyma=bl_tissue, bl_intracranial=bl_tiv,
                            fu_parenchyma=fu_tissue, fu_intracranial=fu_tiv,
                            field_fw=field_fw, field_bw=field_bw)
    stage("correct", "correct", volumes=volumes_file, calibration=profile_path(calibration))
    return {name: (sum(s for s, _ in runs), max(p for _, p in runs)) for name, runs in timings.items()}


def whole_pair(bl: Path, fu: Path, work_dir: Path, nprocs: int, device: str, refine_fine_steps: int,
               calibration: str) -> tuple[float, dict[str, float], float]:
    """Wall time of the Pydra pair workflow with an empty cache, its stages' own times in
    that same run (the rest of the wall time is process start, imports, hashing and file
    handling), and its BVL."""
    from brainlossnet.workflows.participant import PairSpec, PipelineOptions, run_pairs

    start = time.perf_counter()
    (result,) = run_pairs([PairSpec("bench", "1", "2", bl, fu)], work_dir=work_dir,
                          options=PipelineOptions(device=device, calibration=calibration,
                                                  refine_fine_steps=refine_fine_steps), nprocs=nprocs)
    if result.status != "ok":
        raise RuntimeError(result.message)
    return time.perf_counter() - start, result.metrics["stage_seconds"], result.metrics["bvl"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scan", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--refine-fine-steps", type=int, default=REFINE_FINE_STEPS,
                        help=f"full-resolution refinement steps (default {REFINE_FINE_STEPS})")
    parser.add_argument("--calibration", default=DEFAULT_PROFILE,
                        help=f"profile of the correct stage (default {DEFAULT_PROFILE!r})")
    args = parser.parse_args()
    setting = (args.device, args.refine_fine_steps, args.calibration)
    with tempfile.TemporaryDirectory(prefix="blnet-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        bl = args.scan.resolve()
        fu = make_rescan(bl, scratch / "rescan.nii.gz")
        passes = [one_pass(bl, fu, scratch / f"pass{i}", *setting) for i in range(args.repeats)]
        wholes = [whole_pair(bl, fu, scratch / f"work{i}", args.nprocs, *setting) for i in range(args.repeats)]
    stages = list(passes[0])
    medians = {name: statistics.median(p[name][0] for p in passes) for name in stages}
    peaks = {name: max(p[name][1] for p in passes) for name in stages}
    total = sum(medians.values())
    print(f"pair from {args.scan.name} (rescan, no atrophy); {args.repeats} runs; "
          f"{os.cpu_count()} CPUs; device {args.device}; ITK threads "
          f"{os.environ.get('ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS', '1')}; full-resolution steps "
          f"{args.refine_fine_steps}, calibration {args.calibration}")
    in_pair = {name: statistics.median(seconds[name] for _, seconds, _ in wholes) for name in stages}
    print(f"{'stage':15s} {'median s':>9s} {'share':>6s} {'peak MiB':>9s} {'in pair s':>10s}")
    for name in stages:
        print(f"{name:15s} {medians[name]:9.1f} {medians[name] / total:6.0%} {peaks[name]:9.0f} {in_pair[name]:10.1f}")
    print(f"{'sum of stages':15s} {total:9.1f} {1:6.0%}")
    wall = statistics.median(w for w, _, _ in wholes)
    inside = statistics.median(sum(seconds.values()) for _, seconds, _ in wholes)
    print(f"{'whole pair':15s} {wall:9.1f} {wall / total:6.0%}  (Pydra, --nprocs {args.nprocs}, "
          f"empty cache; ratio to the sum of stages)")
    print(f"{'  its stages':15s} {inside:9.1f} {inside / total:6.0%}  (stage times inside that run; "
          f"the rest is worker start, imports, hashing)")
    print(f"BVL of the rescan pair (truth 0): {', '.join(f'{b:+.3f} %' for _, _, b in wholes)}")


if __name__ == "__main__":
    main()
