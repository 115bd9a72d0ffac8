"""``brainlossnet calibrate RESULTS.tsv [RESULTS.tsv ...] --reference COLUMN|TSV [...] -o profile.json``.

Fits the calibration constants of the paper's Eqs. 5-8 (m_TIV, m_scale;
:mod:`brainlossnet.calibration_fit`) to the raw changes ``dbpv`` and ``dtiv`` of one or
more ``group_bvl.tsv`` tables and a reference change per pair, and writes a calibration
profile that the participant level takes with ``--calibration profile.json``, with a
figure of both fits next to it (``profile_fit.png``, after the paper's Fig. 2).

Several tables (e.g. one per site, scanner or simulated person) are fitted together as
one set of pairs. Each table is matched to its own ``--reference`` (one per table, in
order), so tables may reuse participant labels; a single ``--reference`` serves every
table (a column they all have, or one TSV whose rows each table matches by its keys).
The profile records, per table, how the common constants fit it (slope of BVL on the
reference), which shows whether the tables agree.

The reference is either a column of RESULTS.tsv (e.g. ``siena_pbvc`` added by the user)
or a TSV keyed by ``participant_id``, ``session_bl``, ``session_fu`` (with or without the
``sub-``/``ses-`` prefixes) whose column ``--reference-column`` holds the change in
percent, negative for loss (default ``true_dbpv_pct``, the truth table of ``brainlossnet
simulate`` and ``brainlossnet demo``). Pairs whose status is not ``ok``, that lack a
number, or that have no reference are left out and counted in the profile.

The fit uses the raw changes, so the profile the results were computed with does not
matter; the registration model, its refinement budget and the parenchyma definition do:
they are read from the per-pair ``_bvl.json`` files next to each RESULTS.tsv (the model may
be given with ``--model``) and recorded in the profile (``model``, ``fit.refinement``,
``fit.parenchyma_definition``), so that the participant level can warn when a run's
settings differ.

Exit codes: 0 written; 64 usage error (also: a number of references that is neither 1
nor that of the tables, a table given twice); 65 the data do not allow a fit (too few pairs,
no spread, results of several models, refinement budgets or parenchyma definitions, estimates not increasing with
the reference);
66 an input is missing; 73 the profile cannot be written.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainlossnet import __version__
from brainlossnet.bids_app.derivatives import atomic_write_json, read_pair_records
from brainlossnet.calibration import (
    LEGACY_PARENCHYMA_DEFINITION,
    REFINEMENT_KEYS,
    profile_from_dict,
    refinement_budget,
)
from brainlossnet.calibration_fit import CalibrationFit, bvl_slope, fit_calibration
from brainlossnet.volumetry import distortion_corrected

LOGGER = logging.getLogger("brainlossnet.calibrate")

EXIT_OK = 0
EXIT_USAGE = 64
EXIT_DATAERR = 65
EXIT_NOINPUT = 66
EXIT_CANTCREAT = 73

KEY_COLUMNS = ("participant_id", "session_bl", "session_fu")
DEFAULT_REFERENCE_COLUMN = "true_dbpv_pct"
CI_METHOD = ("ordinary least squares (Eq. 5: dbpv on dtiv; Eq. 7: dbpv - m_tiv*dtiv on the reference); "
             "95 % intervals t-based with n-2 degrees of freedom, m_scale's conditional on m_tiv")


class CalibrationUsageError(Exception):
    """The command line names its inputs inconsistently (exit 64)."""


class CalibrationInputError(Exception):
    """An input file or column is missing (exit 66)."""


class CalibrationDataError(Exception):
    """The inputs are there but do not allow a fit (exit 65)."""


def _normalised_keys(table: pd.DataFrame, source: Path) -> pd.DataFrame:
    missing = [column for column in KEY_COLUMNS if column not in table.columns]
    if missing:
        raise CalibrationInputError(f"{source}: no column {', '.join(missing)} (needs {', '.join(KEY_COLUMNS)})")
    table = table.copy()
    subject = table["participant_id"].str.strip().str.removeprefix("sub-")
    table["participant_id"] = "sub-" + subject
    for column in ("session_bl", "session_fu"):
        table[column] = table[column].str.strip().str.removeprefix("ses-")
    return table


def _read_tsv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise CalibrationInputError(f"{path}: no such file")
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CalibrationInputError(f"{path}: not a readable TSV ({' '.join(str(err).split())})") from None
    return _normalised_keys(table, path)


def collect_pairs(
    results_path: Path, reference: str, reference_column: str = DEFAULT_REFERENCE_COLUMN
) -> tuple[pd.DataFrame, dict[str, int], str]:
    """The pairs to fit: ok rows of RESULTS.tsv with dbpv, dtiv and a reference value.

    Parameters
    ----------
    results_path
        A ``group_bvl.tsv``.
    reference
        A column of RESULTS.tsv, or the path of a TSV keyed like it.
    reference_column
        The value column of a reference TSV.

    Returns
    -------
    pairs : pandas.DataFrame
        Key columns and float columns ``dbpv``, ``dtiv``, ``reference``.
    excluded : dict
        Reason -> number of rows left out (``status <value>``, ``missing dbpv/dtiv``,
        ``no reference``).
    reference_name : str
        What the reference is, in words (column and file).

    Raises
    ------
    CalibrationInputError
        A file or column is missing, or the reference TSV names a pair twice.
    """
    results = _read_tsv(results_path)
    for column in ("dbpv", "dtiv", "status"):
        if column not in results.columns:
            raise CalibrationInputError(f"{results_path}: no column {column!r}; is it a group_bvl.tsv?")
    reference_path = Path(reference)
    if reference_path.is_file():
        table = _read_tsv(reference_path)
        if reference_column not in table.columns:
            raise CalibrationInputError(
                f"{reference_path}: no column {reference_column!r} (columns: {', '.join(table.columns)}); "
                "choose one with --reference-column"
            )
        duplicated = table.duplicated(list(KEY_COLUMNS))
        if duplicated.any():
            first = table.loc[duplicated, list(KEY_COLUMNS)].iloc[0].tolist()
            raise CalibrationInputError(f"{reference_path}: pair {' '.join(first)} appears more than once")
        table = table.loc[:, [*KEY_COLUMNS, reference_column]].rename(columns={reference_column: "reference"})
        results = results.drop(columns=["reference"], errors="ignore").merge(table, on=list(KEY_COLUMNS), how="left")
        reference_name = f"column {reference_column} of {reference_path.resolve()}"
    elif reference in results.columns:
        results = results.assign(reference=results[reference])
        reference_name = f"column {reference} of {results_path.resolve()}"
    else:
        raise CalibrationInputError(
            f"--reference {reference!r} is neither a file nor a column of {results_path} "
            f"(columns: {', '.join(results.columns)})"
        )
    excluded: Counter[str] = Counter()
    status = results["status"].str.strip()
    for value, count in status[status != "ok"].value_counts().items():
        excluded[f"status {value or 'empty'}"] = int(count)
    ok = results.loc[status == "ok"].copy()
    for column in ("dbpv", "dtiv", "reference"):
        ok[column] = pd.to_numeric(ok[column], errors="coerce")
    numbers = np.isfinite(ok["dbpv"]) & np.isfinite(ok["dtiv"])
    excluded["missing dbpv/dtiv"] = int((~numbers).sum())
    referenced = numbers & np.isfinite(ok["reference"])
    excluded["no reference"] = int((numbers & ~referenced).sum())
    pairs = ok.loc[referenced, [*KEY_COLUMNS, "dbpv", "dtiv", "reference"]].reset_index(drop=True)
    return pairs, {reason: n for reason, n in excluded.items() if n}, reference_name


def collect_datasets(
    results_paths: list[Path], references: list[str], reference_column: str = DEFAULT_REFERENCE_COLUMN
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The pairs of several results tables, each matched to its own reference.

    Parameters
    ----------
    results_paths
        ``group_bvl.tsv`` tables.
    references
        One reference (column or TSV, as in :func:`collect_pairs`) per table, or one for all.
    reference_column
        The value column of the reference TSVs.

    Returns
    -------
    pairs : pandas.DataFrame
        The usable pairs of all tables (as :func:`collect_pairs`), with a column
        ``dataset``: the index of the table each comes from.
    datasets : list of dict
        Per table: ``results`` (its path), ``reference`` (in words), ``n_pairs`` and
        ``n_excluded`` (reason -> count).

    Raises
    ------
    CalibrationUsageError
        If the number of references is neither 1 nor that of the tables, or a table is
        given twice (its pairs would count double).
    CalibrationInputError
        As :func:`collect_pairs`.
    """
    if len(references) not in (1, len(results_paths)):
        raise CalibrationUsageError(f"{len(references)} references for {len(results_paths)} results tables: "
                                    "give one --reference for all tables or one per table, in the same order")
    seen: set[Path] = set()
    for results_path in results_paths:
        if results_path.resolve() in seen:
            raise CalibrationUsageError(f"{results_path}: given twice; its pairs would count double")
        seen.add(results_path.resolve())
    tables, datasets = [], []
    for index, results_path in enumerate(results_paths):
        reference = references[index if len(references) > 1 else 0]
        pairs, excluded, reference_name = collect_pairs(results_path, reference, reference_column)
        tables.append(pairs.assign(dataset=index))
        datasets.append({"results": str(results_path.resolve()), "reference": reference_name,
                         "n_pairs": len(pairs), "n_excluded": excluded})
    return pd.concat(tables, ignore_index=True), datasets


def dataset_agreement(pairs: pd.DataFrame, n_datasets: int, fit: CalibrationFit) -> list[dict[str, float]]:
    """How the common constants fit each table.

    Parameters
    ----------
    pairs
        The pairs of :func:`collect_datasets` (column ``dataset`` indexes the tables).
    n_datasets
        The number of tables, also those without a usable pair.
    fit
        The constants fitted on all pairs.

    Returns
    -------
    list of dict
        Per table: ``bvl_slope``, the ordinary least-squares slope of BVL (Eq. 8) on the
        reference, as in the accuracy benchmark, and ``bvl_minus_reference_mean_pct``;
        NaN where the table has no usable pair (the slope also where it has fewer than 3
        or no spread of the reference).
    """
    agreement = []
    for index in range(n_datasets):
        table = pairs[pairs["dataset"] == index]
        dbpv, dtiv, reference = (table[c].to_numpy(float) for c in ("dbpv", "dtiv", "reference"))
        bvl = distortion_corrected(dbpv, dtiv, fit.m_tiv, fit.m_scale)
        agreement.append({
            "bvl_slope": bvl_slope(dbpv, dtiv, reference, fit.m_tiv, fit.m_scale),
            "bvl_minus_reference_mean_pct": float(np.mean(bvl - reference)) if len(table) else float("nan"),
        })
    return agreement


def pair_records(results_paths: list[Path], pairs: pd.DataFrame) -> list[dict[str, Any]]:
    """The per-pair ``_bvl.json`` records of ``pairs``, read once.

    Reads the records of the derivatives folder that holds each results table, keeping those
    of that table's pairs (``pairs["dataset"]`` indexes ``results_paths``); an unreadable
    record is warned about and left out.
    """
    kept = []
    for index, results_path in enumerate(results_paths):
        table = pairs.loc[pairs["dataset"] == index, list(KEY_COLUMNS)]
        wanted = set(table.itertuples(index=False, name=None))
        records = read_pair_records(results_path.parent, lambda path, why: LOGGER.warning("%s: %s", path, why))
        kept += [record for record in records
                 if (str(record["participant_id"]), str(record["session_bl"]), str(record["session_fu"])) in wanted]
    return kept


def single_recorded_value(values: Counter[Any], what: str, results_paths: list[Path]) -> Any:
    """The one value the records hold; None when none does.

    Raises
    ------
    CalibrationDataError
        If the records hold several values of ``what``.
    """
    if len(values) > 1:
        listed = ", ".join(f"{value} ({n} pairs)" for value, n in values.most_common())
        named = ", ".join(str(path) for path in results_paths)
        raise CalibrationDataError(f"{named}: the pairs come from several {what}: {listed}; "
                                   f"calibrate each on its own results")
    return next(iter(values), None)


def recorded_model(records: list[dict[str, Any]], results_paths: list[Path]) -> str | None:
    """The registration model version of the records (:func:`pair_records`); None when none is recorded.

    Raises
    ------
    CalibrationDataError
        If the pairs were computed by more than one model.
    """
    versions = Counter(str(record["model_version"]) for record in records if record.get("model_version"))
    return single_recorded_value(versions, "models", results_paths)


def recorded_parenchyma_definition(records: list[dict[str, Any]], results_paths: list[Path]) -> str | None:
    """What the records' parenchyma maps held (:data:`brainlossnet.parenchyma.PARENCHYMA_DEFINITION`);
    None when none records it (results of releases before the tissue fraction, whose binary
    masks :func:`brainlossnet.calibration.fitted_parenchyma_definition` then infers).

    Raises
    ------
    CalibrationDataError
        If the pairs were computed with more than one definition, unrecorded (binary) ones
        among them.
    """
    definitions = Counter(str(record.get("parenchyma_definition") or LEGACY_PARENCHYMA_DEFINITION)
                          for record in records)
    definition = single_recorded_value(definitions, "parenchyma definitions", results_paths)
    return None if definition == LEGACY_PARENCHYMA_DEFINITION else definition


def recorded_refinement(records: list[dict[str, Any]], results_paths: list[Path]) -> dict[str, Any] | None:
    """The test-time refinement of the records: ``refine_steps``, ``refine_fine_steps`` and
    ``refine_fine_learning_rate_vox``.

    m_scale holds for one refinement only (:func:`brainlossnet.calibration.fitted_for_another_refinement`).
    Records written before ``--refine-fine-steps`` existed were computed without such steps,
    those before the step size was recorded with the one of that time
    (:func:`brainlossnet.calibration.refinement_budget`); records without
    ``options.refine_steps`` are not counted (and said so).

    Returns
    -------
    dict or None
        The one refinement of the records; None when none records one.

    Raises
    ------
    CalibrationDataError
        If the pairs were computed with more than one refinement, or a record's is not
        numbers.
    """
    budgets: Counter[tuple[int, int, float]] = Counter()
    unrecorded = 0
    for record in records:
        options = record.get("options") or {}
        try:
            budget = refinement_budget(options)
        except (TypeError, ValueError):
            raise CalibrationDataError(
                f"{record['participant_id']} {record['session_bl']}->{record['session_fu']}: the recorded refinement options "
                f"{', '.join(repr(options.get(key)) for key in REFINEMENT_KEYS)} are not numbers"
            ) from None
        if budget is None:
            unrecorded += 1
        else:
            budgets[budget] += 1
    if unrecorded and budgets:
        LOGGER.warning("%d pair(s) record no refinement budget; the profile records that of the other %d",
                       unrecorded, sum(budgets.values()))
    budget = single_recorded_value(budgets, f"refinement settings ({', '.join(REFINEMENT_KEYS)})", results_paths)
    return None if budget is None else dict(zip(REFINEMENT_KEYS, budget))


def profile_document(
    fit: CalibrationFit,
    *,
    name: str,
    model: str,
    datasets: list[dict[str, Any]],
    source_description: str,
    description: str | None = None,
    plot_name: str | None = None,
    refinement: dict[str, int] | None = None,
    parenchyma_definition: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The calibration profile JSON (format of :class:`brainlossnet.calibration.CalibrationProfile`).

    ``m_tiv`` and ``m_scale`` are the fitted constants; ``fit`` holds the statistics of
    both regressions (n, 95 % intervals, r², residual SD), what was left out, the source
    data, the date, the brainlossnet version, ``datasets``: one entry per results table
    (from :func:`collect_datasets`, with :func:`dataset_agreement`'s numbers), and the
    ``refinement`` budget and ``parenchyma_definition`` the pairs were computed with, when recorded.
    """
    excluded: Counter[str] = Counter()
    for dataset in datasets:
        excluded.update(dataset["n_excluded"])
    moment = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    distortion = fit.distortion
    statistics: dict[str, Any] = {
        "method": CI_METHOD,
        "date": moment.isoformat(),
        "brainlossnet_version": __version__,
        "source_data": source_description,
        "n_pairs": fit.rescaling.n,
        "n_excluded": dict(excluded),
        "m_tiv_fixed": distortion is None,
    }
    if distortion is not None:
        statistics.update({
            "m_tiv_ci95": list(distortion.slope_ci95),
            "c_tiv": distortion.intercept,
            "c_tiv_ci95": list(distortion.intercept_ci95),
            "r2_tiv": distortion.r2,
            "residual_sd_tiv_pct": distortion.residual_sd,
        })
    rescaling = fit.rescaling
    statistics.update({
        "m_scale_ci95": list(rescaling.slope_ci95),
        "c_scale": rescaling.intercept,
        "c_scale_ci95": list(rescaling.intercept_ci95),
        "r2_scale": rescaling.r2,
        "residual_sd_scale_pct": rescaling.residual_sd,
        "corr_dtiv_reference": fit.corr_dtiv_reference,
        "bvl_minus_reference_mean_pct": fit.bvl_minus_reference_mean_pct,
        "bvl_minus_reference_sd_pct": fit.bvl_minus_reference_sd_pct,
    })
    statistics["datasets"] = datasets
    if refinement is not None:
        statistics["refinement"] = refinement
    if parenchyma_definition is not None:
        statistics["parenchyma_definition"] = parenchyma_definition
    if plot_name:
        statistics["plot"] = plot_name
    return {
        "name": name,
        "version": moment.date().isoformat(),
        "m_tiv": fit.m_tiv,
        "m_scale": fit.m_scale,
        "model": model,
        "description": description or (
            f"Fitted by brainlossnet calibrate {__version__} on {fit.rescaling.n} pairs against "
            f"{'; '.join(sorted({d['reference'] for d in datasets}))} (Eqs. 5-8); valid for model {model} only."
        ),
        "fit": statistics,
    }


def save_fit_plot(path: Path, pairs: pd.DataFrame, fit: CalibrationFit, reference_label: str) -> None:
    """Three panels after the paper's Fig. 2: Eq. 5, Eq. 7, and calibrated BVL against the reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dbpv, dtiv, reference = (pairs[c].to_numpy(float) for c in ("dbpv", "dtiv", "reference"))
    residual = dbpv - fit.m_tiv * dtiv
    bvl = distortion_corrected(dbpv, dtiv, fit.m_tiv, fit.m_scale)
    figure, axes = plt.subplots(1, 3, figsize=(13.5, 4.2), constrained_layout=True)

    def scatter_line(axis, x, y, slope, intercept, title):
        axis.scatter(x, y, s=12, alpha=0.7)
        xs = np.array([x.min(), x.max()])
        axis.plot(xs, slope * xs + intercept, color="C3")
        axis.set_title(title, fontsize=9)
        axis.grid(alpha=0.3)

    if fit.distortion is not None:
        d = fit.distortion
        low, high = d.slope_ci95
        scatter_line(axes[0], dtiv, dbpv, d.slope, d.intercept,
                     f"Eq. 5: m_TIV = {d.slope:.3f} [{low:.3f}, {high:.3f}], r² = {d.r2:.2f}")
    else:
        axes[0].scatter(dtiv, dbpv, s=12, alpha=0.7)
        axes[0].set_title(f"m_TIV fixed at {fit.m_tiv:.3f}", fontsize=9)
    axes[0].set(xlabel="dTIV (%)", ylabel="dBPV (%)")
    r = fit.rescaling
    low, high = r.slope_ci95
    scatter_line(axes[1], reference, residual, r.slope, r.intercept,
                 f"Eq. 7: m_scale = {r.slope:.3f} [{low:.3f}, {high:.3f}], r² = {r.r2:.2f}")
    axes[1].set(xlabel=f"reference: {reference_label} (%)", ylabel="dBPV - m_TIV dTIV (%)")
    scatter_line(axes[2], reference, bvl, 1.0, 0.0,
                 f"Eq. 8: BVL - reference {fit.bvl_minus_reference_mean_pct:+.3f} "
                 f"± {fit.bvl_minus_reference_sd_pct:.3f} % (line: identity)")
    axes[2].set(xlabel=f"reference: {reference_label} (%)", ylabel="BVL (%)")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(handle)
    try:
        figure.savefig(temporary, dpi=110)
        os.replace(temporary, path)
    finally:
        plt.close(figure)
        Path(temporary).unlink(missing_ok=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainlossnet calibrate",
        description="Fit the calibration constants m_TIV and m_scale (paper Eqs. 5-8) to one or more "
                    "group_bvl.tsv tables and their references, and write a profile for "
                    "'brainlossnet ... participant --calibration'.",
        epilog="Exit codes: 0 written, 64 usage error, 65 the data do not allow a fit, 66 input missing, "
               "73 output cannot be written. See docs/calibration.md.",
    )
    parser.add_argument("results", type=Path, nargs="+", metavar="RESULTS.tsv",
                        help="group_bvl.tsv of the participant level; several are fitted together")
    parser.add_argument("--reference", required=True, action="append", metavar="COLUMN|TSV",
                        help="reference change in percent (negative = loss): a column of RESULTS.tsv, or a TSV "
                             "keyed by participant_id, session_bl, session_fu; once for all tables or once per "
                             "table, in their order")
    parser.add_argument("--reference-column", default=DEFAULT_REFERENCE_COLUMN, metavar="COLUMN",
                        help=f"value column of a reference TSV (default: {DEFAULT_REFERENCE_COLUMN})")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="PROFILE.json",
                        help="profile to write; the figure goes next to it as <stem>_fit.png")
    parser.add_argument("--name", default=None, help="profile name (default: the output file's stem)")
    parser.add_argument("--model", default=None,
                        help="registration model version the results come from (default: read from the "
                             "per-pair _bvl.json files next to each RESULTS.tsv)")
    parser.add_argument("--m-tiv", type=float, default=None, metavar="VALUE",
                        help="fix m_TIV instead of fitting Eq. 5 (for pairs with too little distortion)")
    parser.add_argument("--source-description", default="", metavar="TEXT",
                        help="what the pairs are (scanner, population, simulation command), recorded in the profile")
    parser.add_argument("--description", default=None, metavar="TEXT", help="the profile's description")
    parser.add_argument("--no-plot", action="store_true", help="do not write the figure")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``brainlossnet calibrate``; return the exit code (see the module docstring)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return EXIT_OK if exit_.code in (None, 0) else EXIT_USAGE
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    LOGGER.setLevel(logging.INFO)
    try:
        pairs, datasets = collect_datasets(args.results, args.reference, args.reference_column)
    except CalibrationUsageError as err:
        LOGGER.error("%s", err)
        return EXIT_USAGE
    except CalibrationInputError as err:
        LOGGER.error("%s", err)
        return EXIT_NOINPUT
    try:
        for dataset in datasets:
            for reason, count in dataset["n_excluded"].items():
                LOGGER.info("%s: left out %d pair(s): %s", dataset["results"], count, reason)
        try:
            fit = fit_calibration(pairs["dbpv"], pairs["dtiv"], pairs["reference"], m_tiv=args.m_tiv)
        except ValueError as err:
            named = ", ".join(str(path) for path in args.results)
            raise CalibrationDataError(f"{named}: {len(pairs)} usable pair(s); {err}") from None
        records = pair_records(args.results, pairs)
        model = recorded_model(records, args.results)
        if args.model:
            if model and model != args.model:
                LOGGER.warning("--model %s differs from the model recorded with the results (%s)", args.model, model)
            model = args.model
        if model is None:
            from brainlossnet.registration import MODEL_VERSION

            LOGGER.warning("no model version recorded next to the results; assuming the installed model %s",
                           MODEL_VERSION)
            model = MODEL_VERSION
        refinement = recorded_refinement(records, args.results)
        parenchyma_definition = recorded_parenchyma_definition(records, args.results)
    except CalibrationDataError as err:
        LOGGER.error("%s", err)
        return EXIT_DATAERR
    if fit.distortion is not None and abs(fit.corr_dtiv_reference) > 0.3:
        LOGGER.warning("dTIV correlates with the reference (r = %.2f): the slope of Eq. 5 mixes distortion "
                       "with true change", fit.corr_dtiv_reference)
    for dataset, agreement in zip(datasets, dataset_agreement(pairs, len(datasets), fit)):
        dataset.update(agreement)
    output = args.output.absolute()
    plot_path = None if args.no_plot else output.with_name(f"{output.stem}_fit.png")
    labels = {args.reference_column if Path(reference).is_file() else reference for reference in args.reference}
    document = profile_document(
        fit, name=args.name or output.stem, model=model, datasets=datasets,
        source_description=args.source_description, description=args.description,
        plot_name=plot_path.name if plot_path else None, refinement=refinement,
        parenchyma_definition=parenchyma_definition,
    )
    profile_from_dict(document)  # the participant level must be able to read it
    try:
        if plot_path:
            save_fit_plot(plot_path, pairs, fit, ", ".join(sorted(labels)))
        atomic_write_json(output, document)
    except OSError as err:
        LOGGER.error("%s: cannot write the profile (%s)", output, " ".join(str(err).split()))
        return EXIT_CANTCREAT
    ci = document["fit"]
    print(f"{output}: m_tiv = {fit.m_tiv:.4f}"
          + (f" [{ci['m_tiv_ci95'][0]:.4f}, {ci['m_tiv_ci95'][1]:.4f}]" if fit.distortion else " (fixed)")
          + f", m_scale = {fit.m_scale:.4f} [{ci['m_scale_ci95'][0]:.4f}, {ci['m_scale_ci95'][1]:.4f}]"
          + f", n = {fit.rescaling.n}, left out {sum(ci['n_excluded'].values())}")
    if len(datasets) > 1:
        for dataset in datasets:
            print(f"  {dataset['results']}: n = {dataset['n_pairs']}, slope of BVL on the reference "
                  f"{dataset['bvl_slope']:.3f}, mean BVL - reference {dataset['bvl_minus_reference_mean_pct']:+.3f} %")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
