"""Small synthetic pair images and records for the report tests, made at test time."""

import io

import numpy as np
import pytest
from PIL import Image

from brainlossnet.reports.figures import PairImages

SCALE = 1.01
"""The forward field maps each FU voxel to BL at SCALE times its distance from the centre:
a uniform loss with FU/BL volume ratio SCALE**-3."""


def _ellipsoid(grid, centre, radii):
    return np.sum(((grid - centre) / np.reshape(radii, (3, 1, 1, 1))) ** 2, axis=0) < 1.0


@pytest.fixture(scope="session")
def pair_images() -> PairImages:
    shape = (40, 48, 44)
    grid = np.indices(shape, dtype=np.float32)
    centre = (np.array(shape, dtype=np.float32) - 1).reshape(3, 1, 1, 1) / 2
    intracranial = _ellipsoid(grid, centre, (17, 21, 19))
    ventricles = {session: _ellipsoid(grid, centre, (3 + session, 6 + session, 4)) for session in (0, 1)}
    parenchyma = {session: _ellipsoid(grid, centre, (15, 19, 17)) & ~ventricles[session] for session in (0, 1)}
    rng = np.random.default_rng(0)
    images = {}
    for session in (0, 1):
        image = 200.0 * intracranial + 500.0 * parenchyma[session] + 900.0 * ~_ellipsoid(grid, centre, (19, 23, 21))
        images[session] = (image * (1 - (np.sum((grid - centre) ** 2, axis=0) > 21**2))
                           + rng.normal(0, 15, shape)).astype(np.float32)
    return PairImages(
        bl=images[0], fu=images[1],
        bl_parenchyma=parenchyma[0].astype(np.float32), fu_parenchyma=parenchyma[1].astype(np.float32),
        bl_intracranial=intracranial.astype(np.float32), fu_intracranial=intracranial.astype(np.float32),
        field_fw=((SCALE - 1.0) * (grid - centre)).astype(np.float32),
        voxel_mm=np.ones(3),
    )


@pytest.fixture
def record() -> dict:
    """A pair record as written by the derivatives writer (numbers chosen by hand)."""
    return {
        "participant_id": "sub-07", "session_bl": "1", "session_fu": "2", "status": "ok", "message": "",
        "bpv_bl_ml": 1150.0, "bpv_fu_ml": 1143.1, "bpv_fu_from_bl_ml": 1143.5, "bpv_bl_from_fu_ml": 1149.4,
        "tiv_bl_ml": 1500.0, "tiv_fu_ml": 1500.6, "tiv_fu_from_bl_ml": 1500.3, "tiv_bl_from_fu_ml": 1500.1,
        "dbpv_fw": -0.5652, "dbpv_bw": -0.5481, "dbpv": -0.55665, "dtiv_fw": 0.02, "dtiv_bw": 0.0333,
        "dtiv": 0.02665, "bvl_fw": -0.5852, "bvl_bw": -0.5681, "bvl": -0.57665,
        "calibration": {"name": "testprofile", "version": "9.9", "m_tiv": 0.75, "m_scale": 1.0,
                        "model": "test model", "description": "made for a test", "fit": {"n": 12}},
        "model_version": "registration_unet sha256:abcdef",
        "stage_seconds": {"reslice": 1.5, "crop": 0.25, "rigid_halfway": 12.0, "segment": 20.0,
                          "register": 8.0, "volumes": 2.0, "correct": 0.01},
        "source_files": {"bl": "sub-07/ses-1/anat/sub-07_ses-1_T1w.nii.gz",
                         "fu": "sub-07/ses-2/anat/sub-07_ses-2_T1w.nii.gz"},
        "acquisition_time": {"bl": "2020-01-01T10:00:00", "fu": "2021-01-01T10:00:00"},
        "interval_days": 366.0, "options": {"seed": 0}, "intermediates": {},
        "generated_by": {"Name": "brainlossnet", "Version": "0.0.test"},
    }


def png_image(data: bytes) -> np.ndarray:
    """Decode PNG bytes (checking the signature) to an RGB array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture
def decode_png():
    return png_image


@pytest.fixture
def field_scale() -> float:
    return SCALE
