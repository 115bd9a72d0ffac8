"""Pairs per hour of the participant level against --nprocs, on a synthetic demo dataset.

Builds one demo dataset (``brainlossnet.bids_app.demo.build_demo_dataset``), then runs the
whole BIDS App participant level on it once per ``--nprocs`` value, each time with a fresh
work dir (nothing cached), and prints the wall time and the throughput. Defaults are the
test suite's tiny heads (half size, 96x112x112 crops), so the table measures the
scheduling of pairs over worker processes more than the network; pass ``--scale 1
--crop-shape 176 208 208`` for adult-size heads.

    OMP_NUM_THREADS=1 python benchmarks/throughput.py --n-subjects 4 --nprocs 1 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from brainlossnet.bids_app.demo import build_demo_dataset
from brainlossnet.cpus import available_cpus
from brainlossnet.bids_app.run import main as run_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, default=4, help="pairs in the dataset (default 4)")
    parser.add_argument("--scale", type=float, default=0.5, help="head size (default 0.5)")
    parser.add_argument("--crop-shape", type=int, nargs=3, default=(96, 112, 112))
    parser.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gpus", default=None, help="passed to the app, e.g. 0,1")
    parser.add_argument("--max-gpu-tasks-per-device", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="blnet_throughput_") as tmp:
        root = Path(tmp)
        build_demo_dataset(root / "bids", n_subjects=args.n_subjects, seed=0, scale=args.scale)
        rows = []
        load_before = os.getloadavg()[0]
        for nprocs in args.nprocs:
            app_args = [
                str(root / "bids"), str(root / f"out{nprocs}"), "participant", "-w", str(root / f"work{nprocs}"),
                "--nprocs", str(nprocs), "--device", args.device,
                "--crop-shape", *map(str, args.crop_shape),
            ]
            if args.gpus:
                app_args += ["--gpus", args.gpus, "--max-gpu-tasks-per-device", str(args.max_gpu_tasks_per_device)]
            start = time.perf_counter()
            code = run_app(app_args)
            wall_s = time.perf_counter() - start
            if code != 0:
                raise SystemExit(f"the app exited with {code} at --nprocs {nprocs}")
            rows.append((nprocs, wall_s))

    print(f"\n{args.n_subjects} pairs, scale {args.scale}, crop {tuple(args.crop_shape)}, device {args.device}"
          f"{', gpus ' + args.gpus if args.gpus else ''}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"{available_cpus()} CPUs available; 1-min load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after (other processes compete when it exceeds nprocs)")
    print(f"{'nprocs':>6} {'wall_s':>8} {'s/pair':>7} {'pairs/h':>8} {'speedup':>7}")
    base_s = rows[0][1]
    for nprocs, wall_s in rows:
        print(f"{nprocs:>6} {wall_s:8.1f} {wall_s / args.n_subjects:7.1f} "
              f"{3600 * args.n_subjects / wall_s:8.1f} {base_s / wall_s:7.2f}")


if __name__ == "__main__":
    main()
