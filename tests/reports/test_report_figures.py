"""Every figure rendered headless (Agg) from small arrays: valid PNG, sized, not blank."""

import numpy as np
import pytest

from brainlossnet.reports import figures


def _not_blank(pixels: np.ndarray) -> None:
    assert pixels.ndim == 3 and pixels.shape[0] > 150 and pixels.shape[1] > 300
    assert pixels.std() > 10  # more than a flat colour
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def test_pair_figures_render_and_summarise_the_forward_field(pair_images, decode_png, field_scale):
    rendered, summary = figures.pair_figures(pair_images)
    assert set(rendered) == {"anatomy", "flicker_bl", "flicker_fu", "deformation"}
    for png in rendered.values():
        _not_blank(decode_png(png))
    bl, fu = decode_png(rendered["flicker_bl"]), decode_png(rendered["flicker_fu"])
    assert bl.shape == fu.shape and not np.array_equal(bl, fu)
    # uniform scaling: FU/BL volume ratio SCALE**-3 everywhere, no folding
    assert summary.median_log_volume_ratio_parenchyma == pytest.approx(-3 * np.log(field_scale), rel=1e-3)
    assert summary.folded_fraction == 0.0
    radius = np.sqrt(np.sum((np.argwhere(pair_images.bl_intracranial > 0.5)
                             - (np.array(pair_images.bl.shape) - 1) / 2) ** 2, axis=1)).max()
    assert summary.max_displacement_mm == pytest.approx((field_scale - 1) * radius, rel=1e-3)


def test_contours_are_drawn_in_their_colours(pair_images, decode_png):
    pixels = decode_png(figures.anatomy_figure(pair_images, figures.slice_centre(pair_images.bl_intracranial)))
    for colour in (figures.PARENCHYMA_COLOUR, figures.INTRACRANIAL_COLOUR):
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        assert np.sum(np.all(np.abs(pixels.astype(int) - rgb) < 40, axis=-1)) > 100, colour


def test_views_are_slices_through_the_centre_in_display_order():
    volume = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    assert figures.view_slice(volume, "axial", (1, 2, 3)).shape == (5, 4)  # rows y, columns x
    assert figures.view_slice(volume, "coronal", (1, 2, 3)).shape == (6, 4)
    np.testing.assert_array_equal(figures.view_slice(volume, "sagittal", (1, 2, 3)), volume[1].T)
    assert figures.slice_centre(np.zeros((4, 6, 8))) == (2, 3, 4)


def test_group_figures_render_with_and_without_ages(decode_png):
    rng = np.random.default_rng(3)
    n = 30
    fw = rng.normal(-0.5, 0.4, n)
    columns = {"bvl_fw": fw, "bvl_bw": fw + rng.normal(0, 0.05, n), "dtiv": rng.normal(0, 0.5, n)}
    columns["bvl"] = (columns["bvl_fw"] + columns["bvl_bw"]) / 2
    columns["dbpv"] = columns["bvl"] + 0.9 * columns["dtiv"]
    rate = columns["bvl"] / 1.5
    ages = rng.uniform(40, 80, n)
    for age in (ages, None):
        rendered = figures.group_figures(columns, 0.9, age, rate)
        assert set(rendered) == {"histogram", "forward_backward", "distortion", "annualised"}
        for png in rendered.values():
            pixels = decode_png(png)
            assert pixels.shape[0] > 250 and pixels.std() > 5


def test_group_figures_survive_empty_and_missing_values(decode_png):
    empty = np.array([])
    columns = {key: empty for key in ("bvl", "bvl_fw", "bvl_bw", "dbpv", "dtiv")}
    for png in figures.group_figures(columns, None, None, empty).values():
        assert decode_png(png).shape[0] > 100
    one = np.array([np.nan, -0.3])
    assert decode_png(figures.agreement_figure(one, one, "a", "b")).shape[1] > 500
