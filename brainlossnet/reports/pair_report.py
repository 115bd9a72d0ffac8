"""The per-pair QC report: one self-contained HTML file (figures embedded as base64 PNG)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from brainlossnet.acquisition import ACQUISITION_KEYS
from brainlossnet.geometry import voxel_sizes_mm
from brainlossnet.interfaces.nifti import load_image
from brainlossnet.reports import markup
from brainlossnet.reports.figures import DeformationSummary, PairImages, pair_figures
from brainlossnet.reports.flags import pair_warnings

IMAGE_KEYS = ("bl_halfway", "fu_halfway", "bl_parenchyma", "fu_parenchyma",
              "bl_intracranial", "fu_intracranial", "field_fw")
"""Keys of a pair's intermediate files (as in ``PairResult.files``) the report draws."""


def load_pair_images(files: Mapping[str, str | Path]) -> PairImages:
    """Read a pair's halfway images, masks and forward field from its intermediate files.

    Parameters
    ----------
    files : mapping
        At least :data:`IMAGE_KEYS` -> NIfTI path (the field stored X x Y x Z x 3).

    Raises
    ------
    KeyError
        If a file is not given.
    """
    arrays = {key: load_image(files[key]) for key in IMAGE_KEYS}
    field = np.moveaxis(arrays["field_fw"][0], -1, 0)
    return PairImages(
        bl=arrays["bl_halfway"][0], fu=arrays["fu_halfway"][0],
        bl_parenchyma=arrays["bl_parenchyma"][0], fu_parenchyma=arrays["fu_parenchyma"][0],
        bl_intracranial=arrays["bl_intracranial"][0], fu_intracranial=arrays["fu_intracranial"][0],
        field_fw=field, voxel_mm=voxel_sizes_mm(arrays["bl_halfway"][1]),
    )


def _title(record: Mapping[str, Any]) -> str:
    return (f"{record.get('participant_id', 'sub-?')}: ses-{record.get('session_bl', '?')} "
            f"→ ses-{record.get('session_fu', '?')}")


def _status(record: Mapping[str, Any], warnings: list[str]) -> str:
    status = str(record.get("status", "ok"))
    if status == "ok" and warnings:
        return '<span class="flagged">ok, with warnings</span>'
    css = "ok" if status == "ok" else ("flagged" if status == "flagged" else "failed")
    return f'<span class="{css}">{markup.esc(status)}</span>'


def _changes_table(record: Mapping[str, Any]) -> str:
    rows = []
    for key, label in (("dbpv", "dBPV, raw parenchyma change (%)"),
                       ("dtiv", "dTIV, apparent intracranial change (%)"),
                       ("bvl", "BVL, corrected and rescaled (%)")):
        rows.append([label, markup.number(record.get(f"{key}_fw"), 3),
                     markup.number(record.get(f"{key}_bw"), 3), markup.number(record.get(key), 3)])
    return markup.table(["", "forward (BL→FU)", "backward (FU→BL)", "final (mean)"], rows)


def _volumes_table(record: Mapping[str, Any]) -> str:
    rows = []
    for kind, label in (("bpv", "parenchyma (BPV)"), ("tiv", "intracranial (TIV)")):
        rows.append([label] + [markup.number(record.get(f"{kind}_{key}_ml"), 1)
                               for key in ("bl", "fu_from_bl", "fu", "bl_from_fu")])
    return markup.table(["ml", "BL", "BL warped to FU", "FU", "FU warped to BL"], rows)


def _correction(record: Mapping[str, Any]) -> str:
    """The formula that made this pair's BVL, with its numbers, and the calibration profile.

    A skull-stripped pair (``distortion_correction`` false, ``--allow-skull-stripped``) has
    no TIV to correct with, so its BVL is the rescaled dBPV alone: the report says so
    rather than show a correction that was not applied.
    """
    profile = record.get("calibration") or {}
    m_tiv, m_scale = profile.get("m_tiv"), profile.get("m_scale")
    if record.get("distortion_correction") is False:
        formula = (
            "<p><strong>No distortion correction</strong>: the scans are skull-stripped, so the "
            "intracranial volume, whose apparent change measures the distortion, cannot be measured. "
            f"BVL = dBPV / m<sub>scale</sub> = {markup.number(record.get('dbpv'), 3)} / "
            f"{markup.number(m_scale, 3)} = <strong>{markup.number(record.get('bvl'), 3)} %</strong> "
            "(forward and backward alike; the dTIV shown above is not used).</p>"
        )
    else:
        formula = (
            f"<p>BVL = (dBPV − m<sub>TIV</sub> · dTIV) / m<sub>scale</sub> = "
            f"({markup.number(record.get('dbpv'), 3)} − {markup.number(m_tiv, 3)} · "
            f"{markup.number(record.get('dtiv'), 3)}) / {markup.number(m_scale, 3)} = "
            f"<strong>{markup.number(record.get('bvl'), 3)} %</strong> "
            "(paper Eqs. 6, 8-10, applied to forward and backward alike).</p>"
        )
    rows = [["profile", f"{profile.get('name', 'n/a')} {profile.get('version', '')}".strip()],
            ["m_TIV", markup.number(m_tiv, 3)], ["m_scale", markup.number(m_scale, 3)],
            ["belongs to model", profile.get("model", "n/a")],
            ["description", profile.get("description", "n/a")]]
    if profile.get("fit"):
        rows.append(["fit", json.dumps(profile["fit"], sort_keys=True)])
    return formula + markup.table(["calibration", ""], rows, text_columns=2)


def _times_table(record: Mapping[str, Any]) -> str:
    seconds = record.get("stage_seconds") or {}
    if not seconds:
        return "<p class=\"muted\">No stage times (the pair did not finish).</p>"
    rows = [[stage, markup.number(value, 1)] for stage, value in seconds.items()]
    rows.append([markup.Raw("<strong>total</strong>"),
                 markup.number(sum(float(v) for v in seconds.values()), 1)])
    return (markup.table(["stage", "seconds"], rows)
            + '<p class="muted">A stage taken from the work-dir cache reports the time of its '
              "original run.</p>")


def _provenance(record: Mapping[str, Any], metadata_bl: Mapping[str, Any] | None,
                metadata_fu: Mapping[str, Any] | None) -> str:
    generated = record.get("generated_by") or {}
    container = generated.get("Container")
    sources = record.get("source_files") or {}
    acquired = record.get("acquisition_time") or {}
    rows = [
        ["software", f"{generated.get('Name', 'brainlossnet')} {generated.get('Version', '')}".strip()],
        ["container", json.dumps(container) if container else "none"],
        ["registration model", record.get("model_version", "n/a")],
        ["calibration", (record.get("calibration") or {}).get("name", "n/a")],
        ["options", json.dumps(record.get("options") or {}, sort_keys=True)],
        ["BL source", sources.get("bl", "n/a")], ["FU source", sources.get("fu", "n/a")],
        ["BL acquired", acquired.get("bl") or "unknown"], ["FU acquired", acquired.get("fu") or "unknown"],
        ["interval", markup.number(record.get("interval_days"), 1, "days")],
    ]
    text = markup.table(["provenance", ""], rows, text_columns=2)
    if metadata_bl is not None and metadata_fu is not None:
        scanner_rows = [[key, str(metadata_bl.get(key, "n/a")), str(metadata_fu.get(key, "n/a"))]
                        for key in ACQUISITION_KEYS]
        text += markup.table(["sidecar", "BL", "FU"], scanner_rows, text_columns=3)
    return text


def _figures_section(figures: Mapping[str, bytes], summary: DeformationSummary) -> str:
    return f"""
<h2>BL and FU in halfway space</h2>
<p>Both scans after the rigid halfway registration (each resampled once), three slices through
the centre of the BL intracranial mask. Contours: <span style="color:#d08a00">parenchyma</span>
(grey + white matter) and <span style="color:#0096c0">TIV</span> (inside the inner skull).</p>
{markup.image(figures['anatomy'], 'BL and FU halfway images with parenchyma and TIV contours')}
<h2>Flicker</h2>
<p>BL and FU alternate every 0.8 s at the same place; a good rigid alignment shows only
true change (ventricles, sulci) moving, no shift of the whole head.</p>
{markup.flicker(figures['flicker_bl'], figures['flicker_fu'], 'BL/FU flicker')}
<h2>Deformation (forward field BL → FU) over BL</h2>
<p>Top: length of the displacement (mm). Bottom: local volume change as log(FU/BL volume),
blue = loss, red = gain. Inside the BL intracranial mask: largest displacement
{markup.number(summary.max_displacement_mm, 2, 'mm')} (99th percentile
{markup.number(summary.p99_displacement_mm, 2, 'mm')}); folded voxels (Jacobian ≤ 0)
{markup.number(100 * summary.folded_fraction, 3, '%')}; median log volume ratio in the parenchyma
{markup.number(summary.median_log_volume_ratio_parenchyma, 4)}.</p>
{markup.image(figures['deformation'], 'forward displacement magnitude and log volume ratio over BL')}
"""


def render_pair_report(
    record: Mapping[str, Any],
    images: PairImages | None = None,
    metadata_bl: Mapping[str, Any] | None = None,
    metadata_fu: Mapping[str, Any] | None = None,
) -> str:
    """The pair's QC report as one HTML document.

    Parameters
    ----------
    record : mapping
        The pair's ``_bvl.json`` record (a failed pair's record gives a report with
        its message and no numbers).
    images : PairImages, optional
        The halfway images, masks and forward field; without them the report has no
        figures (and says so).
    metadata_bl, metadata_fu : mapping, optional
        The T1w sidecars, for the scanner comparison.

    Returns
    -------
    str
        A self-contained HTML document: every figure is an embedded PNG.
    """
    start = time.perf_counter()
    warnings = pair_warnings(record, metadata_bl, metadata_fu)
    if images is not None:
        figures, summary = pair_figures(images)
        figure_html = _figures_section(figures, summary)
    else:
        figure_html = ('<h2>Figures</h2><p class="muted">No images: the pair did not finish, or '
                       "its intermediate files were not available.</p>")
    message = record.get("message")
    body = f"""
<h1>{markup.esc(_title(record))}</h1>
<p>Status: {_status(record, warnings)}{' — ' + markup.esc(message) if message else ''}</p>
<p>Brain volume loss <span class="big">{markup.number(record.get('bvl'), 2, '%')}</span>
<span class="muted">(negative = loss; interval {markup.number(record.get('interval_days'), 0, 'days')})</span></p>
{markup.warnings_box(warnings)}
<h2>Numbers</h2>
{_changes_table(record)}
{_volumes_table(record)}
<h2>Distortion correction and rescaling</h2>
{_correction(record)}
{figure_html}
<h2>Time per stage</h2>
{_times_table(record)}
<h2>Software, model, calibration and inputs</h2>
{_provenance(record, metadata_bl, metadata_fu)}
<p class="muted">Report drawn in {time.perf_counter() - start:.1f} s. How to read it: docs/reports.md
of brainlossnet. Method: Opfer et al., Int J CARS 2024.</p>
"""
    return markup.page(f"brainlossnet {_title(record)}", body)
