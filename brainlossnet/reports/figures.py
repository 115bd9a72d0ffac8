"""The report figures, drawn with matplotlib's Agg canvas (headless) and returned as PNG bytes.

Pair figures show three orthogonal slices of the pair's halfway space (arrays indexed
[x, y, z], RAS+): sagittal, coronal and axial, drawn in neurological orientation
(the subject's right on the right of the panel, anterior on the right of the sagittal
panel, superior up). Group figures are scatter, Bland-Altman and histogram plots.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from brainlossnet.agreement import bland_altman
from brainlossnet.jacobian import jacobian_determinant
from brainlossnet.reports.normative import (
    DE_STEFANO_2016_MS_CUTOFFS_PCT_PER_YEAR,
    OPFER_2018_AGE_YEARS,
    OPFER_2018_MEAN_PCT_PER_YEAR,
    OPFER_2018_P95_PCT_PER_YEAR,
)

DPI = 96
VIEWS = ("sagittal", "coronal", "axial")
PARENCHYMA_COLOUR = "#ffb000"
INTRACRANIAL_COLOUR = "#00c8ff"
_PANEL_INCH = 2.6


@dataclass(frozen=True)
class PairImages:
    """The halfway-space arrays of one pair that the pair figures draw.

    ``field_fw`` is the forward (BL -> FU) displacement, (3, X, Y, Z) voxels, pull-back
    convention; masks are binary; ``voxel_mm`` the three voxel sizes.
    """

    bl: np.ndarray
    fu: np.ndarray
    bl_parenchyma: np.ndarray
    fu_parenchyma: np.ndarray
    bl_intracranial: np.ndarray
    fu_intracranial: np.ndarray
    field_fw: np.ndarray
    voxel_mm: np.ndarray


def png_bytes(figure: Figure) -> bytes:
    """Render a figure to PNG bytes (Agg; no display needed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return buffer.getvalue()


def slice_centre(mask: np.ndarray) -> tuple[int, int, int]:
    """Voxel indices of the centroid of a mask (the array centre when the mask is empty)."""
    points = np.argwhere(np.asarray(mask) > 0.5)
    if points.size == 0:
        return tuple(int(n // 2) for n in np.shape(mask))  # type: ignore[return-value]
    return tuple(int(round(c)) for c in points.mean(axis=0))  # type: ignore[return-value]


def view_slice(volume: np.ndarray, view: str, centre: Sequence[int]) -> np.ndarray:
    """The 2D slice of a view through ``centre``, rows = vertical axis (draw with origin lower).

    ``sagittal``: x fixed, columns y (anterior right), rows z; ``coronal``: y fixed,
    columns x (right right), rows z; ``axial``: z fixed, columns x, rows y (anterior up).
    """
    axis = VIEWS.index(view)
    return np.take(np.asarray(volume), int(centre[axis]), axis=axis).T


def _aspect(view: str, voxel_mm: Sequence[float]) -> float:
    columns, rows = [a for a in range(3) if a != VIEWS.index(view)]
    return float(voxel_mm[rows]) / float(voxel_mm[columns])


def intensity_window(volume: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Grey-level window: 1st and 99.5th percentiles inside the mask (or of non-zero voxels)."""
    values = np.asarray(volume)[np.asarray(mask) > 0.5]
    if values.size == 0:
        values = np.asarray(volume)[np.asarray(volume) != 0]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [1.0, 99.5])
    return float(low), float(max(high, low + 1e-6))


def _grey(ax: Axes, volume: np.ndarray, view: str, centre: Sequence[int], voxel_mm: Sequence[float],
          window: tuple[float, float]) -> None:
    ax.imshow(view_slice(volume, view, centre), cmap="gray", vmin=window[0], vmax=window[1],
              origin="lower", aspect=_aspect(view, voxel_mm), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _contour(ax: Axes, mask: np.ndarray, view: str, centre: Sequence[int], colour: str) -> None:
    plane = view_slice(mask, view, centre)
    if np.any(plane > 0.5) and np.any(plane <= 0.5):
        ax.contour(plane, levels=[0.5], colors=[colour], linewidths=0.8)


def _orientation_labels(ax: Axes, view: str) -> None:
    left, right = ("P", "A") if view == "sagittal" else ("L", "R")
    style = {"color": "white", "fontsize": 8, "transform": ax.transAxes, "va": "center"}
    ax.text(0.02, 0.5, left, ha="left", **style)
    ax.text(0.98, 0.5, right, ha="right", **style)


def anatomy_figure(images: PairImages, centre: Sequence[int]) -> bytes:
    """BL (top) and FU (bottom) halfway images, three views, parenchyma and TIV contours."""
    figure = Figure(figsize=(3 * _PANEL_INCH, 2 * _PANEL_INCH + 0.4), layout="constrained")
    axes = figure.subplots(2, 3)
    rows = (("BL", images.bl, images.bl_parenchyma, images.bl_intracranial),
            ("FU", images.fu, images.fu_parenchyma, images.fu_intracranial))
    for r, (label, volume, parenchyma, intracranial) in enumerate(rows):
        window = intensity_window(volume, intracranial)
        for c, view in enumerate(VIEWS):
            ax = axes[r, c]
            _grey(ax, volume, view, centre, images.voxel_mm, window)
            _contour(ax, intracranial, view, centre, INTRACRANIAL_COLOUR)
            _contour(ax, parenchyma, view, centre, PARENCHYMA_COLOUR)
            _orientation_labels(ax, view)
            ax.set_title(f"{label} {view}", fontsize=9)
    figure.legend(handles=[_line(PARENCHYMA_COLOUR, "parenchyma"), _line(INTRACRANIAL_COLOUR, "TIV")],
                  loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return png_bytes(figure)


def _line(colour: str, label: str) -> Line2D:
    return Line2D([], [], color=colour, label=label)


def flicker_frames(images: PairImages, centre: Sequence[int]) -> tuple[bytes, bytes]:
    """Two same-sized PNGs, BL and FU, three views each, no overlay: shown alternately.

    Each image is windowed by its own percentiles inside its own TIV mask, so a gain
    difference between the sessions does not blink; anatomy that moved does.
    """
    frames = []
    for label, volume, intracranial in (("BL", images.bl, images.bl_intracranial),
                                        ("FU", images.fu, images.fu_intracranial)):
        figure = Figure(figsize=(3 * _PANEL_INCH, _PANEL_INCH + 0.2), layout="constrained")
        axes = figure.subplots(1, 3)
        window = intensity_window(volume, intracranial)
        for ax, view in zip(axes, VIEWS):
            _grey(ax, volume, view, centre, images.voxel_mm, window)
            ax.set_title(f"{label} {view}", fontsize=9)
            ax.text(0.03, 0.95, label, color="yellow", fontsize=12, fontweight="bold",
                    transform=ax.transAxes, va="top")
        frames.append(png_bytes(figure))
    return frames[0], frames[1]


@dataclass(frozen=True)
class DeformationSummary:
    """Whole-volume statistics of the forward field inside the BL intracranial mask."""

    max_displacement_mm: float
    p99_displacement_mm: float
    folded_fraction: float
    median_log_volume_ratio_parenchyma: float


def forward_field_maps(images: PairImages) -> tuple[np.ndarray, np.ndarray, DeformationSummary]:
    """Displacement magnitude (mm) and log volume ratio FU/BL of the forward field.

    For the pull-back forward field (moving BL, fixed FU) the FU/BL volume ratio at a
    voxel is ``1 / det(I + grad u)`` (see :mod:`brainlossnet.jacobian`), so the map is
    ``-log det``: negative where tissue shrank from BL to FU, as BVL is signed. A
    determinant <= 0 (folding) gets NaN and is counted in ``folded_fraction``.

    Returns
    -------
    magnitude_mm, log_ratio : numpy.ndarray
        (X, Y, Z) float32.
    summary : DeformationSummary
    """
    field = np.asarray(images.field_fw, dtype=np.float32)
    voxel_mm = np.asarray(images.voxel_mm, dtype=np.float32).reshape(3, 1, 1, 1)
    magnitude = np.sqrt(np.sum((field * voxel_mm) ** 2, axis=0))
    det = jacobian_determinant(field)
    folded = det <= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.where(folded, np.nan, -np.log(np.where(folded, 1.0, det))).astype(np.float32)
    inside = images.bl_intracranial > 0.5
    parenchyma = (images.bl_parenchyma > 0.5) & ~folded
    summary = DeformationSummary(
        max_displacement_mm=float(magnitude[inside].max()) if inside.any() else float("nan"),
        p99_displacement_mm=float(np.percentile(magnitude[inside], 99)) if inside.any() else float("nan"),
        folded_fraction=float(folded[inside].mean()) if inside.any() else float("nan"),
        median_log_volume_ratio_parenchyma=(float(np.median(log_ratio[parenchyma]))
                                            if parenchyma.any() else float("nan")),
    )
    return magnitude, log_ratio, summary


def deformation_figure(images: PairImages, centre: Sequence[int]) -> tuple[bytes, DeformationSummary]:
    """Forward-field displacement magnitude (top) and log volume ratio FU/BL (bottom) over BL.

    Colours are drawn inside the BL intracranial mask only; the log ratio uses a
    symmetric blue (loss) to red (gain) scale clipped at the 99th percentile of its
    absolute value inside the mask.
    """
    magnitude, log_ratio, summary = forward_field_maps(images)
    inside = images.bl_intracranial > 0.5
    magnitude_max = max(float(np.percentile(magnitude[inside], 99.5)) if inside.any() else 0.0, 1e-3)
    finite = np.abs(log_ratio[inside & np.isfinite(log_ratio)])
    ratio_max = max(float(np.percentile(finite, 99)) if finite.size else 0.0, 1e-3)
    figure = Figure(figsize=(3 * _PANEL_INCH + 0.9, 2 * _PANEL_INCH + 0.3), layout="constrained")
    axes = figure.subplots(2, 3)
    window = intensity_window(images.bl, images.bl_intracranial)
    rows = (("|u| forward (mm)", magnitude, "magma", 0.0, magnitude_max),
            ("log volume ratio FU/BL", log_ratio, "RdBu_r", -ratio_max, ratio_max))
    for r, (label, values, cmap, vmin, vmax) in enumerate(rows):
        for c, view in enumerate(VIEWS):
            ax = axes[r, c]
            _grey(ax, images.bl, view, centre, images.voxel_mm, window)
            overlay = np.ma.masked_where(view_slice(inside, view, centre) < 0.5,
                                         view_slice(values, view, centre))
            shown = ax.imshow(overlay, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", alpha=0.75,
                              aspect=_aspect(view, images.voxel_mm), interpolation="nearest")
            _orientation_labels(ax, view)
            ax.set_title(f"BL {view}", fontsize=9)
        colourbar = figure.colorbar(shown, ax=list(axes[r]), shrink=0.85)
        colourbar.set_label(label, fontsize=8)
        colourbar.ax.tick_params(labelsize=7)
    return png_bytes(figure), summary


def pair_figures(images: PairImages) -> tuple[dict[str, bytes], DeformationSummary]:
    """Every figure of the pair report, through the centroid of the BL intracranial mask.

    Returns
    -------
    figures : dict
        ``anatomy``, ``flicker_bl``, ``flicker_fu``, ``deformation`` -> PNG bytes.
    summary : DeformationSummary
    """
    centre = slice_centre(images.bl_intracranial)
    flicker_bl, flicker_fu = flicker_frames(images, centre)
    deformation, summary = deformation_figure(images, centre)
    return {"anatomy": anatomy_figure(images, centre), "flicker_bl": flicker_bl,
            "flicker_fu": flicker_fu, "deformation": deformation}, summary


# ---------------------------------------------------------------------------
# group figures


def histogram_figure(values: np.ndarray, label: str) -> bytes:
    """Histogram of one quantity (non-finite values left out), with its median marked."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    figure = Figure(figsize=(5.5, 3.4), layout="constrained")
    ax = figure.subplots()
    if values.size:
        ax.hist(values, bins=max(5, min(40, int(np.sqrt(values.size) * 2))), color="#4c72b0",
                edgecolor="white")
        ax.axvline(float(np.median(values)), color="black", linestyle="--",
                   label=f"median {np.median(values):.2f}")
        ax.legend(fontsize=8)
    ax.set_xlabel(label)
    ax.set_ylabel("pairs")
    return png_bytes(figure)


def agreement_figure(a: np.ndarray, b: np.ndarray, label_a: str, label_b: str) -> bytes:
    """Scatter of ``b`` against ``a`` with the identity line, and the Bland-Altman plot of a - b.

    The Bland-Altman panel marks the mean difference and the limits of agreement
    (mean +- 1.96 SD), and the median (dotted), which the paper reports.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    figure = Figure(figsize=(10, 4), layout="constrained")
    scatter, difference = figure.subplots(1, 2)
    scatter.scatter(a, b, s=14, color="#4c72b0")
    if a.size:
        low, high = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
        pad = 0.05 * max(high - low, 1e-3)
        scatter.plot([low - pad, high + pad], [low - pad, high + pad], color="grey", linewidth=0.8,
                     label="identity")
        scatter.legend(fontsize=8)
    scatter.set_xlabel(label_a)
    scatter.set_ylabel(label_b)
    scatter.set_aspect("equal", adjustable="datalim")
    stats = bland_altman(a, b)
    difference.scatter((a + b) / 2, a - b, s=14, color="#4c72b0")
    if stats.n:
        difference.axhline(stats.mean_diff, color="black", label=f"mean {stats.mean_diff:.3f}")
        difference.axhline(stats.median_diff, color="black", linestyle=":",
                           label=f"median {stats.median_diff:.3f}")
        if np.isfinite(stats.sd_diff):
            for limit in (stats.loa_low, stats.loa_high):
                difference.axhline(limit, color="#c44e52", linestyle="--")
            difference.plot([], [], color="#c44e52", linestyle="--",
                            label=f"mean ± 1.96 SD [{stats.loa_low:.3f}, {stats.loa_high:.3f}]")
        difference.legend(fontsize=8)
    difference.set_xlabel(f"mean of {label_a} and {label_b}")
    difference.set_ylabel(f"{label_a} − {label_b}")
    return png_bytes(figure)


def distortion_figure(dbpv_pct: np.ndarray, dtiv_pct: np.ndarray, m_tiv: float | None) -> bytes:
    """dBPV against dTIV (the paper's Fig. 2, left): least-squares line and the profile's slope.

    The slope of dBPV on dTIV measures how much scanner distortion leaks into the brain
    volume change; the calibration's ``m_tiv`` (drawn through the fitted line's centre)
    is what the correction removed.
    """
    x, y = np.asarray(dtiv_pct, dtype=float), np.asarray(dbpv_pct, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    figure = Figure(figsize=(5.5, 4), layout="constrained")
    ax = figure.subplots()
    ax.scatter(x, y, s=14, color="#4c72b0")
    if x.size >= 2 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        r = float(np.corrcoef(x, y)[0, 1])
        grid = np.linspace(x.min(), x.max(), 2)
        ax.plot(grid, slope * grid + intercept, color="black",
                label=f"fit: dBPV = {slope:.2f} dTIV {intercept:+.2f} (r = {r:.2f})")
        if m_tiv is not None and np.isfinite(m_tiv):
            ax.plot(grid, m_tiv * (grid - x.mean()) + slope * x.mean() + intercept, color="#c44e52",
                    linestyle="--", label=f"calibration slope m_TIV = {m_tiv:.2f}")
        ax.legend(fontsize=8)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.axvline(0, color="grey", linewidth=0.5)
    ax.set_xlabel("dTIV (%)")
    ax.set_ylabel("dBPV (%)")
    return png_bytes(figure)


def annualised_figure(rate_pct_per_year: np.ndarray, age_years: np.ndarray | None) -> bytes:
    """Annualised BVL against age with published cut-offs for pathological loss.

    With ages: points at each pair's age, the age-dependent 95th percentile and mean of
    healthy adults (Opfer et al. 2018, ages 45-75) and the MS cut-offs of De Stefano et
    al. (2016) as horizontal lines. Without ages: the pairs in order of their rate.
    """
    rate = np.asarray(rate_pct_per_year, dtype=float)
    figure = Figure(figsize=(7, 4.2), layout="constrained")
    ax = figure.subplots()
    has_age = age_years is not None and np.any(np.isfinite(np.asarray(age_years, dtype=float)))
    if has_age:
        age = np.asarray(age_years, dtype=float)
        ax.scatter(age, rate, s=16, color="#4c72b0", zorder=3, label="pairs")
        ax.plot(OPFER_2018_AGE_YEARS, OPFER_2018_P95_PCT_PER_YEAR, color="#c44e52", marker="o",
                label="healthy 95th percentile (Opfer 2018)")
        ax.plot(OPFER_2018_AGE_YEARS, OPFER_2018_MEAN_PCT_PER_YEAR, color="#c44e52", marker="o",
                linestyle=":", label="healthy mean (Opfer 2018)")
        ax.set_xlabel("age (years)")
    else:
        order = np.argsort(np.where(np.isfinite(rate), rate, np.inf))
        ax.scatter(np.arange(1, rate.size + 1), rate[order], s=16, color="#4c72b0", zorder=3,
                   label="pairs")
        ax.set_xlabel("pairs, ordered by rate (no age available)")
    for (name, value), style in zip(DE_STEFANO_2016_MS_CUTOFFS_PCT_PER_YEAR.items(), ("-", "--", "-.")):
        ax.axhline(value, color="#8172b2", linestyle=style, linewidth=0.9,
                   label=f"MS cut-off {value:.2f} ({name}, De Stefano 2016)")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_ylabel("BVL per year (%/year)")
    ax.legend(fontsize=7, loc="best")
    return png_bytes(figure)


def group_figures(columns: Mapping[str, np.ndarray], m_tiv: float | None,
                  age_years: np.ndarray | None, rate_pct_per_year: np.ndarray) -> dict[str, bytes]:
    """The group report's figures from per-pair columns (``bvl``, ``bvl_fw``, ``bvl_bw``,
    ``dbpv``, ``dtiv``): ``histogram``, ``forward_backward``, ``distortion``, ``annualised``."""
    return {
        "histogram": histogram_figure(columns["bvl"], "BVL (%)"),
        "forward_backward": agreement_figure(columns["bvl_fw"], columns["bvl_bw"],
                                             "BVL forward (%)", "BVL backward (%)"),
        "distortion": distortion_figure(columns["dbpv"], columns["dtiv"], m_tiv),
        "annualised": annualised_figure(rate_pct_per_year, age_years),
    }
