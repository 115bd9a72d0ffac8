"""The group report: one self-contained HTML file over every pair of an output directory."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from brainlossnet.agreement import bland_altman, intraclass_correlation
from brainlossnet.reports import markup
from brainlossnet.reports.figures import agreement_figure, group_figures
from brainlossnet.reports.flags import pair_warnings
from brainlossnet.reports.normative import (
    DE_STEFANO_2016,
    DE_STEFANO_2016_MS_CUTOFFS_PCT_PER_YEAR,
    OPFER_2018,
    Reference,
    age_cutoff_pct_per_year,
    annualised_pct_per_year,
)

PairKey = tuple[str, str, str]
"""(participant_id with ``sub-``, BL session label, FU session label)."""

NUMBER_KEYS = ("bvl", "bvl_fw", "bvl_bw", "dbpv", "dtiv", "interval_days")
MS_CUTOFF_PCT_PER_YEAR = DE_STEFANO_2016_MS_CUTOFFS_PCT_PER_YEAR["95 % specificity"]


def pair_key(record: Mapping[str, Any]) -> PairKey:
    """The key of a pair record."""
    return (str(record["participant_id"]), str(record["session_bl"]), str(record["session_fu"]))


def pair_table(
    records: Sequence[Mapping[str, Any]],
    age_years: Mapping[str, float] | None = None,
    reference: Mapping[PairKey, float] | None = None,
    warnings: Mapping[PairKey, list[str]] | None = None,
) -> pd.DataFrame:
    """One row per pair with the numbers the group report uses.

    Parameters
    ----------
    records : sequence of mapping
        Per-pair ``_bvl.json`` records.
    age_years : mapping, optional
        participant_id -> age (years), e.g. from participants.tsv.
    reference : mapping, optional
        Pair key -> reference BVL (%) of another method.
    warnings : mapping, optional
        Pair key -> its warnings (default: :func:`pair_warnings` of the record).

    Returns
    -------
    pandas.DataFrame
        Columns participant_id, session_bl, session_fu, status, the numbers of
        :data:`NUMBER_KEYS`, ``rate_pct_per_year`` (annualised BVL), ``age``,
        ``age_cutoff`` (Opfer et al. 2018), ``reference``, ``n_warnings``, ``warnings``.
    """
    rows = []
    for record in records:
        key = pair_key(record)
        found = (warnings or {}).get(key)
        listed = found if found is not None else pair_warnings(record)
        row: dict[str, Any] = {"participant_id": key[0], "session_bl": key[1], "session_fu": key[2],
                               "status": record.get("status", "ok")}
        for number_key in NUMBER_KEYS:
            value = record.get(number_key)
            row[number_key] = float(value) if isinstance(value, (int, float)) else np.nan
        row["age"] = float((age_years or {}).get(key[0], np.nan))
        row["reference"] = float((reference or {}).get(key, np.nan))
        row["n_warnings"] = len(listed)
        row["warnings"] = "; ".join(listed)
        rows.append(row)
    table = pd.DataFrame(rows, columns=["participant_id", "session_bl", "session_fu", "status",
                                        *NUMBER_KEYS, "age", "reference", "n_warnings", "warnings"])
    table["rate_pct_per_year"] = annualised_pct_per_year(table["bvl"].to_numpy(float),
                                                         table["interval_days"].to_numpy(float))
    table["age_cutoff"] = age_cutoff_pct_per_year(table["age"].to_numpy(float))
    return table


def _median_iqr(values: np.ndarray, digits: int = 3) -> str:
    values = values[np.isfinite(values)]
    if not values.size:
        return "n/a"
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return f"{median:.{digits}f} [{q1:.{digits}f}, {q3:.{digits}f}]"


def _bland_altman_table(a: np.ndarray, b: np.ndarray, unit: str = "%") -> str:
    stats = bland_altman(a, b)
    rows = [["pairs", str(stats.n)],
            ["mean difference", markup.number(stats.mean_diff, 3, unit)],
            ["limits of agreement (± 1.96 SD)",
             f"{markup.number(stats.loa_low, 3)} to {markup.number(stats.loa_high, 3, unit)}"],
            ["median [IQR] difference",
             f"{markup.number(stats.median_diff, 3)} [{markup.number(stats.q1_diff, 3)}, "
             f"{markup.number(stats.q3_diff, 3)}] {unit}"],
            ["95th percentile of |difference|", markup.number(stats.p95_abs_diff, 3, unit)]]
    return markup.table(["Bland–Altman", ""], rows)


def _reference_line(reference: Reference) -> str:
    doi = f' <a href="https://doi.org/{markup.esc(reference.doi)}">doi:{markup.esc(reference.doi)}</a>' \
        if reference.doi else ""
    return f"<li>{markup.esc(reference.citation)}.{doi}</li>"


def _pairs_table(table: pd.DataFrame, links: Mapping[PairKey, str]) -> str:
    rows, classes = [], []
    for row in table.itertuples(index=False):
        key = (row.participant_id, row.session_bl, row.session_fu)
        link = links.get(key)
        name = f"{row.participant_id} {row.session_bl}→{row.session_fu}"
        cell = markup.Raw(f'<a href="{markup.esc(link)}">{markup.esc(name)}</a>') if link else name
        rows.append([cell, row.status, markup.number(row.bvl, 3), markup.number(row.bvl_fw, 3),
                     markup.number(row.bvl_bw, 3), markup.number(row.dtiv, 3),
                     markup.number(row.interval_days, 0), markup.number(row.rate_pct_per_year, 3),
                     markup.number(row.age, 0), markup.number(row.age_cutoff, 2),
                     markup.Raw(markup.esc(row.warnings) or "—")])
        classes.append("failed" if row.status == "failed" else ("flagged" if row.n_warnings else ""))
    header = ["pair", "status", "BVL %", "fw %", "bw %", "dTIV %", "days", "%/year", "age",
              "cut-off %/year", "warnings"]
    return markup.table(header, rows, text_columns=2, row_classes=classes)


def render_group_report(
    records: Sequence[Mapping[str, Any]],
    *,
    age_years: Mapping[str, float] | None = None,
    reference: Mapping[PairKey, float] | None = None,
    reference_name: str | None = None,
    links: Mapping[PairKey, str] | None = None,
    warnings: Mapping[PairKey, list[str]] | None = None,
    problems: Sequence[str] = (),
) -> str:
    """The group report as one HTML document.

    Parameters
    ----------
    records : sequence of mapping
        Every per-pair record of the output directory.
    age_years : mapping, optional
        participant_id -> age in years (for the age-dependent cut-offs).
    reference : mapping, optional
        Pair key -> the same pair's BVL from a reference method (e.g. SIENA PBVC, %).
    reference_name : str, optional
        Name of the reference (a column name), shown in the report.
    links : mapping, optional
        Pair key -> relative URL of the pair's report.
    warnings : mapping, optional
        Pair key -> warnings (default: computed from each record).
    problems : sequence of str
        Result files that could not be read (listed at the top).

    Returns
    -------
    str
        Self-contained HTML: statistics and figures over the pairs with status ``ok``;
        every pair (failed and flagged too) in the table at the end.
    """
    start = time.perf_counter()
    table = pair_table(records, age_years, reference, warnings)
    ok = table[table["status"] == "ok"]
    n_failed = int((table["status"] == "failed").sum())
    n_flagged = int(((table["status"] != "failed") & (table["n_warnings"] > 0)).sum())
    m_tiv_values = {float((r.get("calibration") or {}).get("m_tiv", np.nan)) for r in records
                    if r.get("status") == "ok"}
    m_tiv = m_tiv_values.pop() if len(m_tiv_values) == 1 else None
    profiles = sorted({str((r.get("calibration") or {}).get("name")) for r in records
                       if r.get("status") == "ok"})
    fw, bw = ok["bvl_fw"].to_numpy(float), ok["bvl_bw"].to_numpy(float)
    age = ok["age"].to_numpy(float)
    rate = ok["rate_pct_per_year"].to_numpy(float)
    figures = group_figures({key: ok[key].to_numpy(float) for key in ("bvl", "bvl_fw", "bvl_bw", "dbpv", "dtiv")},
                            m_tiv, age if np.isfinite(age).any() else None, rate)
    beyond_age = int(np.sum(rate < ok["age_cutoff"].to_numpy(float)))
    with_cutoff = int(np.sum(np.isfinite(rate) & np.isfinite(ok["age_cutoff"].to_numpy(float))))
    beyond_ms = int(np.sum(rate < MS_CUTOFF_PCT_PER_YEAR))
    summary_rows = [
        ["pairs", str(len(table))], ["ok (used in the statistics below)", str(len(ok))],
        ["with warnings (listed in the table)", str(n_flagged)], ["failed", str(n_failed)],
        ["BVL median [IQR]", _median_iqr(ok["bvl"].to_numpy(float)) + " %"],
        ["forward − backward median [IQR]", _median_iqr(fw - bw) + " %"],
        ["annualised BVL median [IQR]", _median_iqr(rate) + " %/year"],
        ["calibration profile(s)", ", ".join(profiles) or "n/a"],
    ]
    problem_html = ""
    if problems:
        problem_html = markup.warnings_box([f"not read: {p}" for p in problems])
    reference_html = ""
    if reference is not None:
        name = reference_name or "reference"
        ref = ok["reference"].to_numpy(float)
        both = np.isfinite(ref) & np.isfinite(ok["bvl"].to_numpy(float))
        icc = intraclass_correlation(np.column_stack([ok["bvl"].to_numpy(float), ref]))
        if both.sum() >= 1:
            plot = markup.image(agreement_figure(ref, ok["bvl"].to_numpy(float), f"{name} (%)",
                                               "brainlossnet BVL (%)"), f"brainlossnet against {name}")
        else:
            plot = '<p class="muted">No pair has both values.</p>'
        reference_html = f"""
<h2>Agreement with {markup.esc(name)}</h2>
<p>{int(both.sum())} of {len(ok)} ok pairs have a value of <code>{markup.esc(name)}</code>. The paper
reports median [IQR] of SIENA − BrainLossNet of 0.10 [−0.18, 0.35] % and an ICC of 0.80 on its test
data. Differences below are {markup.esc(name)} − brainlossnet.</p>
{plot}
{_bland_altman_table(ref, ok["bvl"].to_numpy(float))}
{markup.table(["intraclass correlation (single measures)", ""], [
    ["ICC(2,1), two-way random, absolute agreement", markup.number(icc.icc_2_1, 3)],
    ["ICC(3,1), two-way mixed, consistency", markup.number(icc.icc_3_1, 3)],
    ["pairs", str(icc.n)]])}
<p class="muted">ICC(2,1) counts a systematic offset between the methods as disagreement, ICC(3,1)
does not (Shrout and Fleiss 1979).</p>
"""
    body = f"""
<h1>brainlossnet group report</h1>
{problem_html}
{markup.table(["summary", ""], summary_rows)}
<h2>Brain volume loss</h2>
<p>Distribution of the final BVL (negative = loss) over the ok pairs.</p>
{markup.image(figures['histogram'], 'histogram of BVL')}
<h2>Forward against backward</h2>
<p>Each pair is registered both ways; the two estimates should agree (paper Fig. 3: median
forward − backward −0.02 %, 95 % of |fw − bw| below 0.19 %). Differences are forward − backward.</p>
{markup.image(figures['forward_backward'], 'forward against backward BVL and Bland–Altman plot')}
{_bland_altman_table(fw, bw)}
<h2>Raw parenchyma change against apparent TIV change</h2>
<p>The TIV cannot change, so its apparent change measures distortion between the scans; the
slope of dBPV on dTIV (paper Fig. 2, left) is what the distortion correction removes
(m<sub>TIV</sub> of the calibration profile, dashed).</p>
{markup.image(figures['distortion'], 'dBPV against dTIV')}
<h2>Annualised BVL and cut-offs for pathological loss</h2>
<p>BVL per year = BVL × 365.25 / interval (days, from acquisition times). Red: the age-dependent
95th percentile of healthy adults ({markup.esc(OPFER_2018.short)}: −0.52, −0.77, −1.05 and −1.45 %/year at
ages 45, 55, 65 and 75; linear in between here, not extrapolated); a loss beyond it at that age
is taken as pathological. Purple: cut-offs of annualised loss for multiple sclerosis
({markup.esc(DE_STEFANO_2016.short)}: −0.40, −0.46, −0.52 %/year at 80, 90, 95 % specificity). Both were
measured with SIENA: compare with brainlossnet BVL only under a calibration against SIENA.
Age is taken from participants.tsv (<code>age</code>).</p>
{markup.image(figures['annualised'], 'annualised BVL with cut-offs')}
<p>{beyond_age} of {with_cutoff} pairs with an age in 45–75 lose more than the age-dependent
healthy 95th percentile; {beyond_ms} of {int(np.isfinite(rate).sum())} pairs with an interval lose
more than {MS_CUTOFF_PCT_PER_YEAR} %/year.</p>
{reference_html}
<h2>Pairs</h2>
{_pairs_table(table, links or {})}
<h2>References</h2>
<ul>
<li>Opfer R, Krüger J, Buddenkotte T, Spies L, Behrendt F, Schippling S, Buchert R (2024) BrainLossNet:
a fast, accurate and robust method to estimate brain volume loss from longitudinal MRI. Int J CARS.
<a href="https://doi.org/10.1007/s11548-024-03201-3">doi:10.1007/s11548-024-03201-3</a></li>
{_reference_line(OPFER_2018)}
{_reference_line(DE_STEFANO_2016)}
<li>Shrout PE, Fleiss JL (1979) Intraclass correlations: uses in assessing rater reliability.
Psychol Bull 86:420-428.</li>
</ul>
<p class="muted">Report drawn in {time.perf_counter() - start:.1f} s.</p>
"""
    return markup.page("brainlossnet group report", body)
