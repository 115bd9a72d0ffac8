"""Accuracy against simulated truth: brainlossnet beside ANTs SyN with Jacobian integration.

Input: one or more output folders of ``brainlossnet simulate`` (or ``brainlossnet demo``),
e.g. one per source scan: a BIDS dataset ``SIM_DIR/bids`` and its truth table
``SIM_DIR/truth.tsv`` (``participant_id``, ``session_bl``, ``session_fu``,
``true_dbpv_pct`` and, from simulate, ``scenario``, ``region``, ``scaling``, ``nonlinear``,
``source``; without ``scenario`` every pair counts as atrophy). The table pools all of them.

1. The participant level runs on the dataset with ``--save-intermediates`` (in a child
   process; its wall and CPU time are recorded), giving each pair's halfway crops and
   parenchyma maps and its BVL, forward and backward.
2. The classical reference (:mod:`brainlossnet.jacobian_reference`) runs on the same
   halfway crops and maps: SyN both ways, Jacobian integrated over the parenchyma map,
   timed per pair (one ITK thread, like the pipeline). Results are kept per pair in
   ``OUTPUT_DIR/syn/`` and reused by a rerun with the same SyN settings.
3. One table (:func:`brainlossnet.accuracy_summary.accuracy_table`) is printed and
   written to ``--out`` (markdown with a per-pair table, or TSV when the name ends in .tsv);
   the per-pair numbers go to ``OUTPUT_DIR/accuracy_pairs.tsv``.

Time per pair: brainlossnet's is the sum of its stage times (recorded in each pair's
``_bvl.json``), SyN's the wall time of both registrations and Jacobians. Use
``--nprocs 1 --syn-jobs 1`` when the times are to be compared (parallel workers on few
cores slow each other down).

    python benchmarks/accuracy.py SIM_A SIM_B SIM_C --out accuracy.md --nprocs 1
    python benchmarks/accuracy.py DEMO_DIR --out demo.md --app-args "--crop-shape 96 112 112"
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import fnmatch
import json
import multiprocessing
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from brainlossnet.accuracy_summary import LARGE_GAIN_METRIC, SMALL_GAIN_METRIC, accuracy_table, to_markdown
from brainlossnet.bids_app.derivatives import intermediate_paths, pair_json_path, pair_prefix
from brainlossnet.jacobian_reference import SYN_PRESETS, SynParameters
from brainlossnet.parenchyma import PARENCHYMA_DEFINITION

KEYS = ["participant_id", "session_bl", "session_fu"]
METHODS = {"brainlossnet": "brainlossnet", "syn": "ANTs SyN + Jacobian integration"}


def run_app(bids_dir: Path, derivatives: Path, work_dir: Path, nprocs: int, calibration: str,
            extra: list[str]) -> dict[str, float]:
    """Run the participant level with --save-intermediates; return its wall and CPU seconds."""
    command = [sys.executable, "-m", "brainlossnet", str(bids_dir), str(derivatives), "participant",
               "--save-intermediates", "-w", str(work_dir), "--nprocs", str(nprocs),
               "--calibration", calibration, *extra]
    print("running:", " ".join(shlex.quote(c) for c in command), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    code = subprocess.call(command)
    wall_s = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code not in (0, 1):  # 1: some pair failed, the others are still measured
        raise SystemExit(f"the participant level exited with {code}")
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall_s, "cpu_s": cpu_s, "exit_code": float(code)}


def pipeline_row(derivatives: Path, subject: str, session_bl: str, session_fu: str) -> dict[str, object]:
    """brainlossnet's numbers of one pair from its _bvl.json (NaN when it failed or is missing)."""
    path = pair_json_path(derivatives, subject, session_bl, session_fu)
    nan = float("nan")
    if not path.is_file():
        return {"brainlossnet_status": "missing", "brainlossnet_pct": nan, "brainlossnet_fw_pct": nan,
                "brainlossnet_bw_pct": nan, "brainlossnet_dtiv_pct": nan, "brainlossnet_seconds": nan}
    record = json.loads(path.read_text())
    ok = record.get("status") == "ok"
    seconds = sum(float(v) for v in (record.get("stage_seconds") or {}).values()) if ok else nan
    return {
        "brainlossnet_status": record.get("status"),
        "brainlossnet_pct": float(record["bvl"]) if ok else nan,
        "brainlossnet_fw_pct": float(record["bvl_fw"]) if ok else nan,
        "brainlossnet_bw_pct": float(record["bvl_bw"]) if ok else nan,
        "brainlossnet_dtiv_pct": float(record["dtiv"]) if ok else nan,
        "brainlossnet_seconds": seconds,
    }


def syn_pair(paths: dict[str, str], parameters: dict, seed: int) -> dict[str, float]:
    """SyN + Jacobian integration of one pair from its intermediates, timed (runs in a worker)."""
    from brainlossnet.interfaces.nifti import load_image
    from brainlossnet.jacobian_reference import SynParameters, jacobian_volume_change

    bl, affine = load_image(paths["bl_halfway"])
    fu, fu_affine = load_image(paths["fu_halfway"])
    if not np.allclose(affine, fu_affine, atol=1e-4):
        raise ValueError(f"{paths['fu_halfway']}: not on the grid of {paths['bl_halfway']}")
    bl_mask, _ = load_image(paths["bl_parenchyma"])
    fu_mask, _ = load_image(paths["fu_parenchyma"])
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    change = jacobian_volume_change(bl, fu, bl_mask, fu_mask, affine,
                                    parameters=SynParameters(**parameters), seed=seed)
    return {**change.as_dict(), "seconds": time.perf_counter() - start_wall,
            "cpu_seconds": time.process_time() - start_cpu}


def syn_rows(truth: pd.DataFrame, derivatives: Path, cache: Path, parameters: SynParameters,
             jobs: int, seed: int, subjects: list[str] | None = None) -> pd.DataFrame:
    """The SyN reference for every pair whose intermediates exist; cached per pair in ``cache``.

    ``subjects`` (shell patterns of participant labels, without ``sub-``) limits the pairs that
    are run; pairs already in the cache are always reported.
    """
    cache.mkdir(parents=True, exist_ok=True)
    settings = {"parameters": parameters.as_dict(), "seed": seed, "parenchyma": PARENCHYMA_DEFINITION}
    results: dict[tuple[str, str, str], dict] = {}
    todo = {}
    for key in truth[KEYS].itertuples(index=False, name=None):
        subject = key[0].removeprefix("sub-")
        stored = cache / f"{pair_prefix(subject, key[1], key[2])}_syn.json"
        if stored.is_file():
            document = json.loads(stored.read_text())
            if document.get("settings") == settings:
                results[key] = document["result"]
                continue
        if subjects is not None and not any(fnmatch.fnmatchcase(subject, p) for p in subjects):
            continue
        paths = {k: str(v) for k, v in intermediate_paths(derivatives, subject, key[1], key[2]).items()}
        if all(Path(paths[k]).is_file() for k in ("bl_halfway", "fu_halfway", "bl_parenchyma", "fu_parenchyma")):
            todo[key] = (paths, stored)
    print(f"SyN: {len(results)} pair(s) cached, {len(todo)} to run with {jobs} worker(s)", flush=True)
    context = multiprocessing.get_context("spawn")  # fresh ITK per worker, one thread each
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {pool.submit(syn_pair, paths, parameters.as_dict(), seed): (key, stored)
                   for key, (paths, stored) in todo.items()}
        for future in concurrent.futures.as_completed(futures):
            key, stored = futures[future]
            try:
                result = future.result()
            except Exception as err:  # one failed pair must not stop the benchmark
                print(f"SyN failed on {' '.join(key)}: {type(err).__name__}: {err}", flush=True)
                continue
            stored.write_text(json.dumps({"settings": settings, "result": result}, indent=2) + "\n")
            results[key] = result
            print(f"SyN {' '.join(key)}: {result['dbpv']:+.3f} % in {result['seconds']:.0f} s", flush=True)
    rows = []
    for key, result in results.items():
        rows.append(dict(zip(KEYS, key)) | {
            "syn_pct": result["dbpv"], "syn_fw_pct": result["dbpv_fw"], "syn_bw_pct": result["dbpv_bw"],
            "syn_seconds": result["seconds"], "syn_cpu_seconds": result["cpu_seconds"],
        })
    return pd.DataFrame(rows, columns=[*KEYS, "syn_pct", "syn_fw_pct", "syn_bw_pct", "syn_seconds",
                                       "syn_cpu_seconds"])


def read_truth(path: Path) -> pd.DataFrame:
    """The truth table with string keys (``sub-`` on the participant, bare session labels)."""
    truth = pd.read_csv(path, sep="\t", dtype={k: str for k in KEYS})
    truth["participant_id"] = "sub-" + truth["participant_id"].str.removeprefix("sub-")
    for column in ("session_bl", "session_fu"):
        truth[column] = truth[column].str.removeprefix("ses-")
    if "scenario" not in truth.columns:
        truth["scenario"] = "atrophy"
    return truth


def benchmark_dataset(sim_dir: Path, output_dir: Path, work_dir: Path, args: argparse.Namespace,
                      parameters: SynParameters) -> tuple[pd.DataFrame, dict[str, float]]:
    """Both methods on one simulated dataset: the per-pair table and the app's run time."""
    truth = read_truth(sim_dir / "truth.tsv")
    if "source" not in truth.columns:
        truth["source"] = sim_dir.name
    derivatives = output_dir / "derivatives"
    app = {"wall_s": float("nan"), "cpu_s": float("nan")}
    if not args.skip_app:
        app = run_app(sim_dir / "bids", derivatives, work_dir, args.nprocs, args.calibration,
                      shlex.split(args.app_args))
    pipeline = pd.DataFrame([
        dict(zip(KEYS, key)) | pipeline_row(derivatives, key[0].removeprefix("sub-"), key[1], key[2])
        for key in truth[KEYS].itertuples(index=False, name=None)
    ])
    syn = syn_rows(truth, derivatives, output_dir / "syn", parameters, args.syn_jobs, args.seed,
                   args.syn_subjects)
    pairs = truth.merge(pipeline, on=KEYS, how="left").merge(syn, on=KEYS, how="left")
    for column in ("syn_pct", "syn_fw_pct", "syn_bw_pct", "syn_seconds", "syn_cpu_seconds"):
        pairs[column] = pairs[column].astype(float)
    pairs.insert(0, "dataset", str(sim_dir))
    output_dir.mkdir(parents=True, exist_ok=True)
    pairs.to_csv(output_dir / "accuracy_pairs.tsv", sep="\t", index=False, float_format="%.6g")
    return pairs, app


def pairs_markdown(pairs: pd.DataFrame) -> str:
    """One row per pair: truth, both methods' estimates (forward / backward) and seconds."""

    def estimate(row: pd.Series, prefix: str) -> str:
        if not np.isfinite(row[f"{prefix}_pct"]):
            return "-"
        return f"{row[f'{prefix}_pct']:+.3f} ({row[f'{prefix}_fw_pct']:+.3f} / {row[f'{prefix}_bw_pct']:+.3f})"

    lines = ["| source | pair | truth % | brainlossnet % (fw / bw) | s | ANTs SyN % (fw / bw) | s (CPU s) |",
             "|---|---|---|---|---|---|---|"]
    for _, row in pairs.iterrows():
        syn_s = "-" if not np.isfinite(row["syn_seconds"]) else f"{row['syn_seconds']:.0f} ({row['syn_cpu_seconds']:.0f})"
        lines.append(f"| {row['source']} | {row['participant_id'].removeprefix('sub-')} | {row['true_dbpv_pct']:+.3f} "
                     f"| {estimate(row, 'brainlossnet')} | {row['brainlossnet_seconds']:.0f} "
                     f"| {estimate(row, 'syn')} | {syn_s} |")
    return "\n".join(lines)


PER_SOURCE_METRICS = ("95th percentile |estimate - truth| (%)", "slope of estimate on truth", SMALL_GAIN_METRIC,
                      LARGE_GAIN_METRIC)


def per_source_markdown(pairs: pd.DataFrame) -> str:
    """brainlossnet's error, slope and gains per source scan and scenario: a calibration fitted on
    another person can read one person high and another low, which the pooled table hides."""
    tables = {source: accuracy_table(group, {"brainlossnet": str(source)}) for source, group in pairs.groupby("source")}
    first = next(iter(tables.values()))
    rows = first[first["metric"].isin(PER_SOURCE_METRICS)][["metric", "scenario"]]
    for source, table in tables.items():
        rows = rows.merge(table[["metric", "scenario", str(source)]], on=["metric", "scenario"], how="left")
    return to_markdown(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sim_dirs", type=Path, nargs="+", metavar="SIM_DIR",
                        help="output(s) of 'brainlossnet simulate' (bids/ and truth.tsv), e.g. one per source scan")
    parser.add_argument("--out", type=Path, required=True, help="table file (.md, or .tsv)")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="derivatives, SyN results and per-pair table (default SIM_DIR/accuracy; with "
                             "several SIM_DIRs, OUTPUT_DIR/<name of SIM_DIR>)")
    parser.add_argument("-w", "--work-dir", type=Path, default=None, help="Pydra cache (default OUTPUT_DIR/work)")
    parser.add_argument("--nprocs", type=int, default=1, help="pipeline worker processes (default 1)")
    parser.add_argument("--calibration", default="default", help="calibration profile of the pipeline")
    parser.add_argument("--app-args", default="", help="more arguments for the participant level, one string")
    parser.add_argument("--skip-app", action="store_true", help="use the derivatives already in OUTPUT_DIR")
    parser.add_argument("--syn-jobs", type=int, default=1, help="SyN pairs run at once (default 1)")
    parser.add_argument("--syn-preset", choices=sorted(SYN_PRESETS), default="quick",
                        help="SyN settings (brainlossnet.jacobian_reference.SYN_PRESETS): 'full' is "
                             "antsRegistrationSyN.sh's SyN stage, hours per pair on one thread; 'quick' "
                             "skips the 1 mm level (default quick)")
    parser.add_argument("--syn-subjects", nargs="+", default=None, metavar="PATTERN",
                        help="run SyN only on these participant labels (shell patterns, e.g. "
                             "'atrophy*' rescan1); on few cores SyN's hours per dataset set the budget")
    parser.add_argument("--syn-radius", type=int, default=None, help="override the preset's CC radius (voxels)")
    parser.add_argument("--syn-iterations", type=int, nargs="+", default=None,
                        help="override the preset's iterations per level, coarsest first")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    parameters = SYN_PRESETS[args.syn_preset]
    if args.syn_radius is not None:
        parameters = dataclasses.replace(parameters, metric_radius_voxels=args.syn_radius)
    if args.syn_iterations is not None:
        parameters = dataclasses.replace(parameters, iterations=tuple(args.syn_iterations))
    frames, app_wall_s, app_cpu_s = [], 0.0, 0.0
    for sim_dir in (d.resolve() for d in args.sim_dirs):
        if args.output_dir is None:
            output_dir = sim_dir / "accuracy"
        else:
            output_dir = args.output_dir.resolve() / (sim_dir.name if len(args.sim_dirs) > 1 else "")
        work_dir = (args.work_dir.resolve() if args.work_dir else output_dir / "work")
        pairs, app = benchmark_dataset(sim_dir, output_dir, work_dir, args, parameters)
        frames.append(pairs)
        app_wall_s += app["wall_s"]
        app_cpu_s += app["cpu_s"]
    pairs = pd.concat(frames, ignore_index=True)
    table = accuracy_table(pairs, METHODS)

    context = [
        f"Datasets: {', '.join(str(d) for d in args.sim_dirs)} ({len(pairs)} pairs in truth.tsv; brainlossnet "
        f"estimated {int(np.isfinite(pairs['brainlossnet_pct']).sum())}, SyN {int(np.isfinite(pairs['syn_pct']).sum())}).",
        f"brainlossnet: calibration '{args.calibration}', --nprocs {args.nprocs}; " + (
            "participant level not rerun (--skip-app)." if args.skip_app else
            f"participant runs {app_wall_s:.0f} s wall, {app_cpu_s:.0f} s CPU in all (with Pydra overhead)."),
        f"ANTs SyN (SyNOnly, CC), preset {args.syn_preset}"
        f"{'' if parameters == SYN_PRESETS[args.syn_preset] else ' with overrides'}: {json.dumps(parameters.as_dict())}, {args.syn_jobs} worker(s), "
        f"ITK threads {os.environ.get('ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS', '1')}; median SyN CPU "
        f"{np.nanmedian(pairs['syn_cpu_seconds']) if pairs['syn_cpu_seconds'].notna().any() else float('nan'):.0f} s per pair.",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; time per pair = sum of "
        "stage times (brainlossnet), wall time of both SyN registrations and Jacobians (SyN).",
    ]
    markdown = to_markdown(table)
    print()
    print("\n".join(context))
    print()
    print(markdown)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix == ".tsv":
        table.map(lambda v: f"{v:.6g}" if isinstance(v, float) else v).to_csv(args.out, sep="\t", index=False)
    else:
        args.out.write_text("\n".join(f"{line}  " for line in context) + "\n\n" + markdown
                            + "\n\nbrainlossnet per source:\n\n" + per_source_markdown(pairs)
                            + "\n\nPer pair:\n\n" + pairs_markdown(pairs) + "\n")
    print(f"wrote {args.out} and accuracy_pairs.tsv in each output folder")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
