"""The derivatives writer: every file brainlossnet puts in output_dir goes through here.

Layout and names (documented in docs/outputs.md)::

    output_dir/
      dataset_description.json
      group_bvl.tsv                                      (brainlossnet.bids_app.group)
      sub-01/anat/
        sub-01_from-01_to-02_bvl.json                    every number and its provenance
        sub-01_ses-01_from-01_to-02_space-halfway_T1w.nii.gz           (--save-intermediates)
        sub-01_ses-01_from-01_to-02_space-halfway_label-parenchyma_probseg.nii.gz
        sub-01_ses-01_from-01_to-02_space-halfway_label-intracranial_mask.nii.gz
        (the same three for ses-02)
        sub-01_from-01_to-02_mode-image_xfm.nii.gz       displacement field BL -> FU
        sub-01_from-02_to-01_mode-image_xfm.nii.gz       displacement field FU -> BL
        sub-01_from-01_to-02_desc-halfway_xfm.json       rigid halfway transform and grid

A pair is named by the ``from-<baseline session>_to-<follow-up session>`` entities.
Every write is atomic: the content goes to a hidden temporary file in the target
directory, which is then renamed over the target, so output_dir never holds a
partial file.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from brainlossnet import __version__

if TYPE_CHECKING:
    from brainlossnet.bids_app.pairing import SessionPair
    from brainlossnet.workflows.participant import PairResult

LOGGER = logging.getLogger(__name__)

PIPELINE_NAME = "brainlossnet"
BIDS_VERSION = "1.10.0"
PAIR_JSON_GLOB = "sub-*/anat/sub-*_from-*_to-*_bvl.json"
"""Glob, relative to output_dir, of the per-pair result files."""
PARENCHYMA_SUFFIX = "_label-parenchyma_probseg.nii.gz"
"""Name ending of a session's parenchyma fraction map in halfway space."""
LEGACY_PARENCHYMA_SUFFIX = "_label-parenchyma_mask.nii.gz"
"""What releases before the tissue fraction (2026-12-07, ninth session) wrote instead: a
binary mask; removed when its pair is written again."""

_CITATION = (
    "Opfer R, Krüger J, Buddenkotte T, Spies L, Behrendt F, Schippling S, Buchert R (2024) "
    "BrainLossNet: a fast, accurate and robust method to estimate brain volume loss from "
    "longitudinal MRI. Int J CARS. https://doi.org/10.1007/s11548-024-03201-3"
)


class OutputDirError(Exception):
    """output_dir (or the work dir) cannot be used (BIDS exit status 73)."""


# ---------------------------------------------------------------------------
# atomic writes


@contextmanager
def _atomic_target(path: Path, mode: str) -> Iterator[IO]:
    """Open a hidden temporary file next to ``path``; rename it to ``path`` on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        mode, dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o666 & ~_umask())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically.

    Parameters
    ----------
    path : Path
        Target; its directory is created if needed.
    text : str
    """
    with _atomic_target(path, "w") as handle:
        handle.write(text)


def atomic_write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically.

    Non-finite floats are written as ``null`` (JSON has no NaN); numpy scalars and
    paths are converted to plain numbers and strings.
    """
    atomic_write_text(path, json.dumps(_plain(data), indent=2, allow_nan=False) + "\n")


def atomic_copy(source: Path, target: Path) -> None:
    """Copy a file atomically; a ``.nii`` source is gzip-compressed for a ``.nii.gz`` target.

    Parameters
    ----------
    source : Path
    target : Path
        Derivative images end with ``.nii.gz``; other files keep their format.
    """
    compress = target.name.endswith(".nii.gz") and source.name.endswith(".nii")
    with _atomic_target(target, "wb") as handle, source.open("rb") as src:
        if compress:  # mtime=0 keeps the bytes identical between runs
            with gzip.GzipFile(filename="", mode="wb", fileobj=handle, compresslevel=1,
                               mtime=0) as zipped:
                shutil.copyfileobj(src, zipped, length=1 << 20)
        else:
            shutil.copyfileobj(src, handle, length=1 << 20)


def _plain(value: Any) -> Any:
    """Recursively turn a result into JSON-serialisable plain Python values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()  # numpy / torch scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------
# output locations


def prepare_output_dir(output_dir: Path, bids_dir: Path) -> None:
    """Check that output_dir may receive derivatives, and create it.

    Parameters
    ----------
    output_dir, bids_dir : Path

    Raises
    ------
    OutputDirError
        If output_dir is bids_dir or lies inside it (other than under
        ``bids_dir/derivatives/``, the BIDS place for derivatives), cannot be created,
        is not writable, or holds another pipeline's derivatives.
    """
    out, bids = output_dir.resolve(), bids_dir.resolve()
    if out == bids or (out.is_relative_to(bids)
                       and not out.is_relative_to(bids / "derivatives")):
        raise OutputDirError(
            f"{output_dir}: output directory lies inside the BIDS dataset {bids_dir}; "
            f"choose a folder outside it or under {bids_dir / 'derivatives'}"
        )
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputDirError(f"{output_dir}: cannot create output directory ({err.strerror})") from None
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise OutputDirError(f"{output_dir}: output directory is not writable")
    description = output_dir / "dataset_description.json"
    if description.is_file():
        try:
            generated = json.loads(description.read_text()).get("GeneratedBy") or [{}]
        except (json.JSONDecodeError, AttributeError):
            raise OutputDirError(f"{description}: exists but is not a JSON object") from None
        name = generated[0].get("Name") if isinstance(generated, list) else None
        if name != PIPELINE_NAME:
            raise OutputDirError(
                f"{description}: output directory holds derivatives of {name!r}, "
                f"not {PIPELINE_NAME}"
            )
        if generated[0].get("Version") != __version__:
            LOGGER.warning(
                "%s: results of %s %s are already there; this is %s",
                output_dir, PIPELINE_NAME, generated[0].get("Version"), __version__,
            )


def container_info() -> dict[str, str] | None:
    """Describe the container this process runs in, for ``GeneratedBy``.

    Apptainer/Singularity are recognised by their ``APPTAINER_CONTAINER`` /
    ``SINGULARITY_CONTAINER`` variables (the image path, whose name becomes the
    tag). Otherwise ``BRAINLOSSNET_CONTAINER_TYPE`` and ``BRAINLOSSNET_CONTAINER_TAG``
    (set by the project's Dockerfile) are used, and a bare ``/.dockerenv`` gives
    ``{"Type": "docker"}``.

    Returns
    -------
    dict or None
        ``{"Type": ..., "Tag": ...}`` (Tag when known), or None outside a container.
    """
    for variable, kind in (("APPTAINER_CONTAINER", "apptainer"),
                           ("SINGULARITY_CONTAINER", "singularity")):
        if os.environ.get(variable):
            return {"Type": kind, "Tag": Path(os.environ[variable]).name}
    kind = os.environ.get("BRAINLOSSNET_CONTAINER_TYPE")
    if kind:
        info = {"Type": kind}
        if os.environ.get("BRAINLOSSNET_CONTAINER_TAG"):
            info["Tag"] = os.environ["BRAINLOSSNET_CONTAINER_TAG"]
        return info
    if Path("/.dockerenv").exists():
        return {"Type": "docker"}
    return None


def generated_by() -> dict[str, Any]:
    """The ``GeneratedBy`` entry describing this brainlossnet."""
    entry: dict[str, Any] = {
        "Name": PIPELINE_NAME,
        "Version": __version__,
        "Description": "Percent brain volume change between T1w sessions (BrainLossNet).",
    }
    container = container_info()
    if container:
        entry["Container"] = container
    return entry


def write_dataset_description(output_dir: Path, bids_dir: Path) -> Path:
    """Write ``output_dir/dataset_description.json`` (BIDS derivative dataset).

    Parameters
    ----------
    output_dir : Path
        Prepared by :func:`prepare_output_dir`.
    bids_dir : Path
        The source dataset; its ``DatasetDOI`` is carried over when present.

    Returns
    -------
    Path
        The file written.
    """
    source: dict[str, str] = {"URL": bids_dir.resolve().as_uri()}
    try:
        doi = json.loads((bids_dir / "dataset_description.json").read_text()).get("DatasetDOI")
    except (OSError, json.JSONDecodeError, AttributeError):
        doi = None
    if doi:
        source["DOI"] = doi
    path = output_dir / "dataset_description.json"
    atomic_write_json(path, {
        "Name": "brainlossnet: percent brain volume change",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by()],
        "SourceDatasets": [source],
        "HowToAcknowledge": f"Please cite the BrainLossNet method: {_CITATION}",
    })
    return path


# ---------------------------------------------------------------------------
# names


def pair_prefix(subject: str, session_bl: str, session_fu: str) -> str:
    """``sub-<subject>_from-<session_bl>_to-<session_fu>``, the stem of a pair's files."""
    return f"sub-{subject}_from-{session_bl}_to-{session_fu}"


def pair_json_path(output_dir: Path, subject: str, session_bl: str, session_fu: str) -> Path:
    """Path of a pair's result file ``sub-X/anat/sub-X_from-BL_to-FU_bvl.json``."""
    return output_dir / f"sub-{subject}" / "anat" / (
        pair_prefix(subject, session_bl, session_fu) + "_bvl.json"
    )


def intermediate_paths(
    output_dir: Path, subject: str, session_bl: str, session_fu: str
) -> dict[str, Path]:
    """Target path of each intermediate of a pair, keyed as ``PairResult.files``.

    Parameters
    ----------
    output_dir : Path
    subject, session_bl, session_fu : str
        Labels without prefixes.

    Returns
    -------
    dict
        ``bl_halfway``, ``fu_halfway`` (crops in the pair's halfway space),
        ``bl_parenchyma``, ``fu_parenchyma`` (parenchyma fraction maps in halfway space),
        ``bl_intracranial``, ``fu_intracranial`` (binary masks in halfway space), ``field_fw`` (BL -> FU) and ``field_bw``
        (FU -> BL) displacement fields, ``transform`` (JSON: the rigid FU -> BL
        transform and the halfway grid).
    """
    anat = output_dir / f"sub-{subject}" / "anat"
    pair = f"from-{session_bl}_to-{session_fu}"
    paths = {}
    for side, session in (("bl", session_bl), ("fu", session_fu)):
        stem = f"sub-{subject}_ses-{session}_{pair}_space-halfway"
        paths[f"{side}_halfway"] = anat / f"{stem}_T1w.nii.gz"
        paths[f"{side}_parenchyma"] = anat / f"{stem}{PARENCHYMA_SUFFIX}"
        paths[f"{side}_intracranial"] = anat / f"{stem}_label-intracranial_mask.nii.gz"
    paths["field_fw"] = anat / f"sub-{subject}_from-{session_bl}_to-{session_fu}_mode-image_xfm.nii.gz"
    paths["field_bw"] = anat / f"sub-{subject}_from-{session_fu}_to-{session_bl}_mode-image_xfm.nii.gz"
    paths["transform"] = anat / f"sub-{subject}_{pair}_desc-halfway_xfm.json"
    return paths


# ---------------------------------------------------------------------------
# the per-pair record


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def pair_record(
    pair: SessionPair,
    result: PairResult,
    *,
    bids_dir: Path,
    options: Mapping[str, Any],
    intermediates: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The content of a pair's ``_bvl.json``.

    Parameters
    ----------
    pair : SessionPair
        The two sessions (with acquisition times and the T1w candidates).
    result : PairResult
        What the workflow returned for the pair.
    bids_dir : Path
        Source dataset; source files are given relative to it.
    options : mapping
        Run options worth recording (pairing, device, calibration, crop shape, seed).
    intermediates : mapping, optional
        Key -> path relative to output_dir of the intermediates written.

    Returns
    -------
    dict
        ``participant_id``, ``session_bl``, ``session_fu``, ``status``, ``message``,
        then every entry of ``result.metrics`` (BVL, volumes, calibration, model
        version, seconds per stage; absent for a failed pair), then provenance:
        ``source_files``, ``t1w_candidates``, ``acquisition_time``, ``interval_days``,
        ``options``, ``intermediates``, ``generated_by``.
    """
    bl, fu = pair.baseline, pair.followup
    interval_days = None
    if bl.acquired is not None and fu.acquired is not None:
        interval_days = (fu.acquired - bl.acquired).total_seconds() / 86400.0
    record: dict[str, Any] = {
        "participant_id": f"sub-{bl.subject}",
        "session_bl": bl.session,
        "session_fu": fu.session,
        "status": result.status,
        "message": result.message,
    }
    if result.status != "failed":  # ok or flagged
        record.update(result.metrics)
    record.update({
        "source_files": {"bl": _relative(bl.t1w, bids_dir), "fu": _relative(fu.t1w, bids_dir)},
        "t1w_candidates": {
            "bl": [_relative(p, bids_dir) for p in bl.candidates],
            "fu": [_relative(p, bids_dir) for p in fu.candidates],
        },
        "acquisition_time": {
            "bl": bl.acquired.isoformat() if bl.acquired else None,
            "fu": fu.acquired.isoformat() if fu.acquired else None,
        },
        "interval_days": interval_days,
        "options": {**record.get("options", {}), **options},
        "intermediates": dict(intermediates or {}),
        "generated_by": generated_by(),
    })
    return record


def write_pair(
    output_dir: Path,
    pair: SessionPair,
    result: PairResult,
    *,
    bids_dir: Path,
    options: Mapping[str, Any],
    save_intermediates: bool = False,
) -> dict[str, Any]:
    """Write a pair's outputs: intermediates (optional) and then its ``_bvl.json``.

    A pair's files always reflect its latest run: intermediates left by an earlier
    run are removed when this run does not write them (a failed pair, or no
    ``--save-intermediates``). A failed pair gets a ``_bvl.json`` with
    ``status: "failed"`` and the message, and no numbers.

    Parameters
    ----------
    output_dir : Path
    pair : SessionPair
    result : PairResult
    bids_dir : Path
    options : mapping
        See :func:`pair_record`.
    save_intermediates : bool
        Copy ``result.files`` into output_dir (ok pairs only).

    Returns
    -------
    dict
        The record written (see :func:`pair_record`).
    """
    spec = (pair.baseline.subject, pair.baseline.session, pair.followup.session)
    targets = intermediate_paths(output_dir, *spec)
    written: dict[str, str] = {}
    keep = save_intermediates and result.status != "failed"
    if keep:
        for key in sorted(set(result.files) - set(targets)):
            LOGGER.warning("intermediate %r of %s has no derivative name; not written",
                           key, pair_prefix(*spec))
    for key, target in targets.items():
        if keep and key in result.files:
            atomic_copy(Path(result.files[key]), target)
            written[key] = target.relative_to(output_dir).as_posix()
        elif target.exists():
            target.unlink()
            LOGGER.info("%s: removed (left by an earlier run)", target)
    for key in ("bl_parenchyma", "fu_parenchyma"):
        legacy = targets[key].with_name(targets[key].name.replace(PARENCHYMA_SUFFIX, LEGACY_PARENCHYMA_SUFFIX))
        if legacy.exists():
            legacy.unlink()
            LOGGER.info("%s: removed (the binary mask of a release before the tissue fraction)", legacy)
    record = pair_record(pair, result, bids_dir=bids_dir, options=options, intermediates=written)
    atomic_write_json(pair_json_path(output_dir, *spec), record)
    return record


def read_pair_records(output_dir: Path, on_error: Callable[[Path, str], None]) -> list[dict[str, Any]]:
    """Read every per-pair ``_bvl.json`` under output_dir.

    Parameters
    ----------
    output_dir : Path
    on_error : callable
        Called with (path, problem) for a file that is not a result record; the
        file is then left out.

    Returns
    -------
    list of dict
        The records, in path order.
    """
    records = []
    for path in sorted(output_dir.glob(PAIR_JSON_GLOB)):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            on_error(path, f"cannot be read as JSON ({err})")
            continue
        if not isinstance(record, dict) or not {"participant_id", "session_bl",
                                                "session_fu", "status"} <= set(record):
            on_error(path, "is not a brainlossnet pair record")
            continue
        records.append(record)
    return records
