"""Calibration profiles: the constants of distortion correction and rescaling (Eqs. 6, 8).

A profile is a small versioned JSON document. Profiles shipped with the package live in
``brainlossnet/data/calibration/<name>.json``; users pass a name or a path to their own.
Each profile says which registration model it belongs to: constants fitted for one network
do not carry over to another (the paper's 0.95/0.30 belong to the paper's closed network).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

DEFAULT_PROFILE = "default"


@dataclass(frozen=True)
class CalibrationProfile:
    """Constants of Eqs. 6 and 8 with their provenance."""

    name: str
    version: str
    m_tiv: float
    m_scale: float
    model: str
    description: str
    fit: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.m_scale > 0:
            raise ValueError(f"calibration profile {self.name!r}: m_scale must be > 0, got {self.m_scale}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def shipped_profiles() -> list[str]:
    """Names of the profiles that ship inside the package."""
    folder = resources.files("brainlossnet") / "data" / "calibration"
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


def profile_from_dict(document: dict[str, Any]) -> CalibrationProfile:
    """A profile from its JSON document; unknown keys are an error, so typos do not pass silently."""
    return CalibrationProfile(**document)


def profile_path(name_or_path: str | Path = DEFAULT_PROFILE) -> Path:
    """The JSON file of a shipped profile (by name) or of a user's profile (by path).

    Raises
    ------
    FileNotFoundError
        If the name is not shipped and no such file exists.
    """
    candidate = Path(name_or_path)
    if candidate.suffix == ".json" or candidate.exists():
        if not candidate.is_file():
            raise FileNotFoundError(f"calibration profile file not found: {candidate}")
        return candidate.resolve()
    shipped = resources.files("brainlossnet") / "data" / "calibration" / f"{name_or_path}.json"
    if not shipped.is_file():
        raise FileNotFoundError(
            f"unknown calibration profile {name_or_path!r}; shipped: {', '.join(shipped_profiles())}"
        )
    return Path(str(shipped))


def load_profile(name_or_path: str | Path = DEFAULT_PROFILE) -> CalibrationProfile:
    """Load a shipped profile by name, or a user's profile from a JSON file.

    Raises
    ------
    FileNotFoundError
        If the name is not shipped and no such file exists.
    ValueError
        If the document is not a valid profile.
    """
    path = profile_path(name_or_path)
    try:
        return profile_from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as error:
        raise ValueError(f"{path}: not a valid calibration profile ({error})") from error


def fitted_for_another_model(profile: CalibrationProfile, model_version: str) -> bool:
    """Whether ``profile`` was fitted for a registration model other than ``model_version``.

    A fitted profile records the exact model version whose raw changes it was fitted on,
    ``<family>-<recipe version>+<weights hash>`` (``brainlossnet.registration.MODEL_VERSION``);
    its constants do not carry over to other weights (retrained, fine-tuned). Profiles that
    name no version of the running model's family (``prior``: any model; ``paper``: the
    paper's closed network, marked so) are not judged here.
    """
    return _model_family(profile.model) == _model_family(model_version) and profile.model != model_version


REFINEMENT_KEYS = ("refine_steps", "refine_fine_steps", "refine_fine_learning_rate_vox")
"""The recorded options that make up a refinement, in the order of :func:`refinement_budget`."""

LEGACY_FINE_LEARNING_RATE_VOX = 0.1
"""The full-resolution step size of a record or profile that records full-resolution steps but
no step size: the only one before the eleventh session (docs/calibration.md)."""


def refinement_budget(options: dict[str, Any]) -> tuple[int, int, float] | None:
    """``(refine_steps, refine_fine_steps, refine_fine_learning_rate_vox)`` of a pair's recorded
    options or a profile's ``fit["refinement"]``.

    None when ``refine_steps`` is not recorded. A record without ``refine_fine_steps`` predates
    that option and was computed without such steps (0); one without the step size was
    computed with :data:`LEGACY_FINE_LEARNING_RATE_VOX`. Without full-resolution steps the step
    size changes nothing and reads 0.

    Raises
    ------
    TypeError, ValueError
        If a recorded step count is not an integer or the step size not a number.
    """
    if "refine_steps" not in options:
        return None
    fine_steps = int(options.get("refine_fine_steps", 0))
    fine_learning_rate_vox = float(options.get("refine_fine_learning_rate_vox", LEGACY_FINE_LEARNING_RATE_VOX))
    return int(options["refine_steps"]), fine_steps, fine_learning_rate_vox if fine_steps else 0.0


def fitted_for_another_refinement(profile: CalibrationProfile, run_options: dict[str, Any]) -> bool:
    """Whether ``profile`` records a test-time refinement other than the one about to run.

    The raw change the registration reads depends on its refinement (two steps at full
    resolution read about 40 % more than none, and their step size sets how much small
    changes read, docs/calibration.md), so m_scale holds for one refinement only. A profile
    written by ``brainlossnet calibrate`` records that of its pairs in ``fit["refinement"]``
    (``refine_steps``, ``refine_fine_steps``, ``refine_fine_learning_rate_vox``); profiles
    without that record are not judged. The refinement's other constants (the pooled
    stage's step size, smoothness, window) have not changed since budgets were recorded and
    are not recorded.

    Parameters
    ----------
    profile
        A loaded profile.
    run_options
        The refinement options of the run about to use it (``refine_steps``,
        ``refine_fine_steps``, ``refine_fine_learning_rate_vox``), read as a record's by
        :func:`refinement_budget`.

    Returns
    -------
    bool
        True when the profile records a refinement and it differs from the run's.
    """
    recorded = refinement_budget(profile.fit.get("refinement") or {})
    return recorded is not None and recorded != refinement_budget(run_options)


LEGACY_PARENCHYMA_DEFINITION = "binary-mask"
"""The parenchyma definition of a fitted profile that records none: ``brainlossnet calibrate``
records it since the tissue fraction came in (2026-12-07, ninth session); before, the pipeline's
parenchyma was a binary mask."""


def fitted_parenchyma_definition(profile: CalibrationProfile) -> str | None:
    """The parenchyma definition ``profile`` was fitted on; None for a profile that is no fit.

    ``fit["parenchyma_definition"]`` where recorded; a profile written by ``brainlossnet
    calibrate`` (it lists its ``fit["datasets"]``) without that record was fitted on binary
    masks (:data:`LEGACY_PARENCHYMA_DEFINITION`); the constant ``prior`` and ``paper`` are no
    fits.
    """
    recorded = profile.fit.get("parenchyma_definition")
    if recorded is not None:
        return str(recorded)
    return LEGACY_PARENCHYMA_DEFINITION if "datasets" in profile.fit else None


def fitted_for_another_parenchyma(profile: CalibrationProfile, definition: str) -> bool:
    """Whether ``profile`` was fitted on another parenchyma definition than ``definition``.

    The raw change is a Jacobian integral over the parenchyma map, so it depends on what the
    map holds (a tissue fraction weighs the partial-volume voxels along the ventricles and
    sulci, which the deformation stretches, where a binary mask counts them as all or
    nothing; docs/accuracy.md), and m_scale holds for one definition only
    (:func:`fitted_parenchyma_definition`).
    """
    fitted = fitted_parenchyma_definition(profile)
    return fitted is not None and fitted != definition


def _model_family(model_version: str) -> str:
    """``blnet-reg`` of ``blnet-reg-0.1.0+acb931569afc``: the name without version and weights."""
    return model_version.split("+", 1)[0].rsplit("-", 1)[0]
