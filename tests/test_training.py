"""Contracts of the training loop, its checkpoints and the `brainlossnet train` command."""

import dataclasses
import io
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from brainlossnet.bids_app.cli import train as train_cli
from brainlossnet.deformation import voxel_grid
from brainlossnet.models.registration_unet import RegistrationConfig, RegistrationUNet, make_warp
from brainlossnet.training import (
    MixedPairSource,
    PairSample,
    RealPairSource,
    RegistrationLoss,
    SyntheticPairSource,
    TrainingConfig,
    collate,
    collate_truth,
    new_model_and_optimizer,
    restore_state,
    train,
    training_state,
    validate,
)

torch.set_num_threads(1)
CPU = torch.device("cpu")
SMALL = RegistrationConfig(channels=(8, 16, 16, 16, 16, 16), final_conv_channels=(8,))
SMALL_CORRELATION = dataclasses.replace(SMALL, correlation_radius_vox=1)


def phantom(shape=(48, 48, 48), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random 'head' (values in about [0, 1]) and its ball-shaped cavity mask."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand((1, 1, 6, 6, 6), generator=generator)
    image = torch.nn.functional.interpolate(coarse, size=shape, mode="trilinear", align_corners=True)[0, 0]
    center = (torch.tensor(shape, dtype=torch.float32) - 1) / 2
    mask = ((voxel_grid(shape) - center.view(3, 1, 1, 1)) ** 2).sum(0) <= (min(shape) / 2 - 4) ** 2
    return (image * mask).numpy(), mask.numpy()


class ShiftedPair:
    """Always the same toy pair: a smooth image and its copy shifted by 1.5 voxels."""

    def __init__(self) -> None:
        image, _ = phantom((32, 32, 32))
        moving = torch.from_numpy(image)[None]
        shift = torch.zeros(1, 3, 32, 32, 32)
        shift[0, 0] = 1.5
        fixed = make_warp()(moving[None], shift)[0]
        self.pair = PairSample(moving, fixed)

    def sample(self, index: int) -> PairSample:
        return self.pair


def parameters(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_a_couple_of_steps_on_synthetic_pairs_give_finite_losses_and_a_validation_record():
    source = SyntheticPairSource([phantom()], seed=0, patch_shape=(32, 32, 32))
    held_out = SyntheticPairSource([phantom(seed=1)], seed=1, rotate_deg=None, swap_probability=0.0)
    config = TrainingConfig(steps=2, batch_size=2, validate_every=2, checkpoint_every=1)
    model, optimizer = new_model_and_optimizer(SMALL, config, CPU)
    checkpoints = []
    history = train(model, optimizer, source, config, validation_pairs=[held_out.sample(0)], on_checkpoint=checkpoints.append, progress=False)
    assert len(history.loss) == 2 and np.isfinite(history.loss).all()
    assert [c["step"] for c in checkpoints] == [1, 2, 2]
    record = history.validation[-1]
    assert record["step"] == 2
    assert {"ncc_before", "ncc_after", "field_error_mm", "identity_error_mm", "tissue_change_true_pct", "tissue_change_pred_pct"} <= set(record)
    assert record["identity_error_mm"] > 0.1


def test_swapped_pairs_drop_the_unknown_truth():
    source = SyntheticPairSource([phantom()], seed=0, patch_shape=(32, 32, 32), swap_probability=1.0)
    assert source.sample(0).displacement is None
    kept = SyntheticPairSource([phantom()], seed=0, patch_shape=(32, 32, 32), swap_probability=0.0)
    assert kept.sample(0).displacement.shape == (3, 32, 32, 32)


def test_loss_decreases_on_a_toy_pair():
    config = TrainingConfig(steps=20, batch_size=1, learning_rate=1e-3, validate_every=100, checkpoint_every=100)
    model, optimizer = new_model_and_optimizer(SMALL, config, CPU)
    history = train(model, optimizer, ShiftedPair(), config, progress=False)
    assert np.mean(history.loss[-3:]) < history.loss[0] - 0.01
    # ... because the predicted field moved towards the true shift of +1.5 voxels along x.
    with torch.inference_mode():
        field = model(ShiftedPair().pair.moving[None], ShiftedPair().pair.fixed[None])
    assert field[0, 0, 8:-8, 8:-8, 8:-8].mean() < -0.1 or field[0, 0, 8:-8, 8:-8, 8:-8].mean() > 0.1


def test_the_supervised_field_term_is_the_mean_squared_error_over_known_fields_only():
    image = torch.from_numpy(phantom((16, 16, 16))[0])[None]
    truth = torch.zeros(3, 16, 16, 16)
    truth[0] = 2.0
    region = torch.zeros(16, 16, 16, dtype=torch.bool)
    region[4:12, 4:12, 4:12] = True
    known = PairSample(image, image, truth, region)
    unknown = PairSample(image, image, None, region)  # a real or swapped pair: no truth
    moving, fixed = collate([known, unknown], CPU)
    field_truth, field_region = collate_truth([known, unknown], CPU)
    assert field_region[0].sum() == region.sum() and not field_region[1].any()
    predicted = torch.zeros(2, 3, 16, 16, 16)
    predicted[:, 0] = 0.5  # error 1.5 voxels on the known pair, and anything on the other
    predicted[1, 1] = 7.0
    supervised = RegistrationLoss(smoothness_weight=0.0, ncc_kernel_vox=5, field_weight=0.1)
    total, similarity, _, field_error = supervised(moving, fixed, predicted, field_truth, field_region)
    assert float(field_error) == pytest.approx(1.5**2)
    assert float(total) == pytest.approx(float(similarity) + 0.1 * 1.5**2, rel=1e-6)
    unsupervised = RegistrationLoss(smoothness_weight=0.0, ncc_kernel_vox=5)
    assert float(unsupervised(moving, fixed, predicted, field_truth, field_region)[0]) == pytest.approx(float(similarity))
    only_unknown = collate_truth([unknown], CPU)
    assert float(supervised(moving[1:], fixed[1:], predicted[1:], *only_unknown)[3]) == 0.0


def test_the_field_term_teaches_a_known_field_that_the_images_alone_do_not_show():
    image = ShiftedPair().pair.moving
    truth = torch.zeros(3, 32, 32, 32)
    truth[0] = 1.5
    region = torch.zeros(32, 32, 32, dtype=torch.bool)
    region[8:24, 8:24, 8:24] = True

    class IdenticalImagesKnownShift:
        def sample(self, index: int) -> PairSample:
            return PairSample(image, image, truth, region)

    learned_shift_vox = {}
    for weight in (0.0, 1.0):
        config = TrainingConfig(steps=15, batch_size=1, learning_rate=1e-3, field_weight=weight,
                                validate_every=100, checkpoint_every=100)
        model, optimizer = new_model_and_optimizer(SMALL, config, CPU)
        train(model, optimizer, IdenticalImagesKnownShift(), config, progress=False)
        with torch.inference_mode():
            learned_shift_vox[weight] = float(model(image[None], image[None])[0, 0][region].mean())
    assert abs(learned_shift_vox[0.0]) < 0.1  # unsupervised: identical images, no motion
    assert learned_shift_vox[1.0] > 0.4  # supervised: pulled towards the known +1.5


class RandomTranslations:
    """Textured 32^3 images and their copies translated by a random vector of up to 1 voxel per axis."""

    def __init__(self) -> None:
        self.warp = make_warp(padding_mode="border")
        self.region = torch.zeros(32, 32, 32, dtype=torch.bool)
        self.region[8:24, 8:24, 8:24] = True

    def sample(self, index: int) -> PairSample:
        generator = torch.Generator().manual_seed(index)
        coarse = torch.rand((1, 1, 12, 12, 12), generator=generator)
        moving = torch.nn.functional.interpolate(coarse, size=(32, 32, 32), mode="trilinear", align_corners=True)[0]
        truth = (2 * torch.rand(3, generator=generator) - 1).view(3, 1, 1, 1).expand(3, 32, 32, 32).clone()
        fixed = self.warp(moving[None], truth[None])[0]
        return PairSample(moving, fixed, truth, self.region)


def test_the_correlation_input_lets_a_short_supervised_run_learn_translations_the_two_image_input_does_not():
    # docs/training_notes.md, run 6: the same contrast on brain patches.
    source = RandomTranslations()
    held_out = [source.sample(10_000 + i) for i in range(8)]
    config = TrainingConfig(steps=80, batch_size=4, learning_rate=1e-3, smoothness_weight=0.0, field_weight=1.0,
                            validate_every=1000, checkpoint_every=1000)
    error_vox = {}
    for name, model_config in (("two images", SMALL), ("correlation", SMALL_CORRELATION)):
        model_config = dataclasses.replace(model_config, integration_steps=0)
        model, optimizer = new_model_and_optimizer(model_config, config, CPU)
        train(model, optimizer, source, config, progress=False)
        with torch.inference_mode():
            error_vox[name] = float(np.mean([
                torch.linalg.norm(model(p.moving[None], p.fixed[None])[0] - p.displacement, dim=0)[p.mask].mean()
                for p in held_out
            ]))
    identity_vox = float(np.mean([torch.linalg.norm(p.displacement, dim=0)[p.mask].mean() for p in held_out]))
    assert error_vox["correlation"] < 0.6 * identity_vox
    assert error_vox["two images"] > 0.8 * identity_vox


def test_training_is_deterministic_under_a_seed():
    source = SyntheticPairSource([phantom()], seed=3, patch_shape=(32, 32, 32))
    config = TrainingConfig(steps=3, batch_size=2, seed=11, validate_every=100, checkpoint_every=100)
    runs = []
    for _ in range(2):
        model, optimizer = new_model_and_optimizer(SMALL, config, CPU)
        history = train(model, optimizer, source, config, progress=False)
        runs.append((parameters(model), history.loss))
    assert runs[0][1] == runs[1][1]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][0], runs[1][0]))


def test_resuming_from_a_checkpoint_reproduces_an_uninterrupted_run():
    source = SyntheticPairSource([phantom()], seed=4, patch_shape=(32, 32, 32))
    config = TrainingConfig(steps=4, batch_size=2, seed=5, validate_every=100, checkpoint_every=100)
    model, optimizer = new_model_and_optimizer(SMALL, config, CPU)
    straight = train(model, optimizer, source, config, progress=False)
    expected = parameters(model)

    first_half = TrainingConfig(**{**config.__dict__, "steps": 2})
    model, optimizer = new_model_and_optimizer(SMALL, first_half, CPU)
    history = train(model, optimizer, source, first_half, progress=False)
    buffer = io.BytesIO()
    torch.save(training_state(model, optimizer, 2, first_half, history), buffer)
    buffer.seek(0)
    model, optimizer, step, history = restore_state(torch.load(buffer, weights_only=False), CPU)
    assert step == 2
    resumed = train(model, optimizer, source, config, start_step=step, history=history, progress=False)
    assert resumed.loss == straight.loss
    assert all(torch.equal(a, b) for a, b in zip(parameters(model), expected))


def test_validate_scores_the_zero_field_error_of_a_known_shift():
    pair = ShiftedPair().pair
    truth = torch.zeros(3, 32, 32, 32)
    truth[0] = 1.5
    region = torch.zeros(32, 32, 32, dtype=torch.bool)
    region[8:24, 8:24, 8:24] = True
    model = RegistrationUNet(SMALL)
    record = validate(model, [PairSample(pair.moving, pair.fixed, truth, region)])
    assert record["identity_error_mm"] == pytest.approx(1.5)
    assert record["field_error_mm"] == pytest.approx(1.5, abs=0.05)  # untrained: near-zero field
    assert -1.0 <= record["ncc_before"] <= 1.0
    assert abs(record["tissue_change_true_pct"]) < 1e-3  # a shift keeps the volume ...
    assert abs(record["tissue_change_pred_pct"]) < 1e-3  # ... and so does a near-zero field


@pytest.mark.parametrize("model_config", [SMALL, SMALL_CORRELATION], ids=["two images", "correlation input"])
def test_export_writes_loadable_weights_and_a_model_card(tmp_path, model_config):
    config = TrainingConfig(steps=1, batch_size=1, validate_every=1, checkpoint_every=1)
    model, optimizer = new_model_and_optimizer(model_config, config, CPU)
    history = train(model, optimizer, ShiftedPair(), config, progress=False)
    state = training_state(model, optimizer, 1, config, history)
    state["run"] = {"command": "brainlossnet train --steps 1", "wall_s": 1.0, "hardware": "test", "train_scans": ["a"], "holdout_scans": ["b"]}
    weights = train_cli.export_weights(state, tmp_path)
    payload = torch.load(weights, weights_only=True)
    reloaded = RegistrationUNet(RegistrationConfig.from_dict(payload["config"]))
    assert reloaded.config == model_config
    reloaded.load_state_dict(payload["state_dict"])
    assert all(torch.equal(a, b) for a, b in zip(parameters(reloaded), parameters(model)))
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "brainlossnet train --steps 1" in card and "Held out for validation" in card and ": b" in card


def test_cli_reports_usage_and_missing_inputs(tmp_path, capsys):
    assert train_cli.main(["--scans", str(tmp_path / "absent.nii.gz"), "--cache-dir", str(tmp_path), "--output-dir", str(tmp_path)]) == 66
    assert train_cli.main(["--scans", str(tmp_path), "--cache-dir", str(tmp_path), "--output-dir", str(tmp_path), "--export-only"]) == 64
    assert train_cli.main(["--scans", str(tmp_path), "--holdout", "other.nii.gz", "--cache-dir", str(tmp_path), "--output-dir", str(tmp_path)]) == 64
    assert train_cli.main(["--scans", str(tmp_path), "--patch-shape", "60", "64", "64", "--cache-dir", str(tmp_path), "--output-dir", str(tmp_path)]) == 64
    assert train_cli.main(["--steps", "3"]) == 64  # the folders are required
    assert train_cli.main(["--cache-dir", str(tmp_path), "--output-dir", str(tmp_path)]) == 64  # and --scans or --real-pairs
    assert train_cli.main(["--help"]) == 0


def test_export_only_exports_the_checkpoint_of_an_output_dir(tmp_path):
    config = TrainingConfig(steps=1, batch_size=1)
    model, optimizer = new_model_and_optimizer(SMALL, config, CPU)
    history = train(model, optimizer, ShiftedPair(), config, progress=False)
    run_dir, export_dir = tmp_path / "run", tmp_path / "weights"
    run_dir.mkdir()
    torch.save(training_state(model, optimizer, 1, config, history), run_dir / train_cli.CHECKPOINT_NAME)
    code = train_cli.main(["--cache-dir", str(tmp_path), "--output-dir", str(run_dir), "--export-only", "--export", str(export_dir)])
    assert code == 0
    payload = torch.load(export_dir / "registration_unet.pt", weights_only=True)
    assert payload["metadata"]["step"] == 1
    assert (export_dir / "MODEL_CARD.md").exists()


def doubled_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 'real' pair whose follow-up is twice its baseline, so a swap is visible."""
    image, mask = phantom((32, 32, 32), seed)
    return image, 2.0 * image, mask


def test_real_pairs_are_served_without_truth_and_swapped_as_asked():
    kept = RealPairSource([doubled_pair()], seed=0, patch_shape=(16, 16, 16), swap_probability=0.0, noise_std=0.0)
    sample = kept.sample(0)
    assert sample.moving.shape == sample.fixed.shape == (1, 16, 16, 16) and sample.displacement is None
    torch.testing.assert_close(sample.fixed, 2.0 * sample.moving)
    swapped = RealPairSource([doubled_pair()], seed=0, patch_shape=(16, 16, 16), swap_probability=1.0, noise_std=0.0)
    torch.testing.assert_close(swapped.sample(0).moving, 2.0 * swapped.sample(0).fixed)
    with pytest.raises(ValueError, match="shapes differ"):
        RealPairSource([(np.zeros((8, 8, 8)), np.zeros((8, 8, 9)), np.zeros((8, 8, 8)))], seed=0)


def test_a_mixed_source_draws_from_each_source_by_weight_and_deterministically():
    real = RealPairSource([doubled_pair()], seed=0, patch_shape=(16, 16, 16), noise_std=0.0)
    synthetic = SyntheticPairSource([phantom((32, 32, 32))], seed=0, patch_shape=(16, 16, 16))
    only_real = MixedPairSource([real, synthetic], [1.0, 0.0], seed=0)
    assert all(only_real.sample(i).displacement is None for i in range(10))
    mixed = MixedPairSource([real, synthetic], [0.5, 0.5], seed=0)
    from_real = [bool(torch.allclose(s.fixed, 2.0 * s.moving) or torch.allclose(s.moving, 2.0 * s.fixed))
                 for s in (mixed.sample(i) for i in range(40))]
    assert 8 <= sum(from_real) <= 32
    assert torch.equal(mixed.sample(5).moving, mixed.sample(5).moving)
    with pytest.raises(ValueError):
        MixedPairSource([real], [0.0], seed=0)


def test_mixed_precision_training_gives_finite_losses_and_weights():
    """bfloat16 on the CPU sometimes gives NaN gradients (training.gradients_are_finite): such a
    step is skipped and recorded, every other step updates the weights, none turns them NaN."""
    config = TrainingConfig(steps=4, batch_size=1, validate_every=100, checkpoint_every=100, mixed_precision=True)
    model, optimizer = new_model_and_optimizer(SMALL, config, CPU)
    before = parameters(model)
    history = train(model, optimizer, ShiftedPair(), config, progress=False)
    assert np.isfinite(history.loss).all()
    assert all(torch.isfinite(p).all() for p in parameters(model))
    updated = any(not torch.equal(a, b) for a, b in zip(before, parameters(model)))
    assert updated == (len(history.skipped_steps) < config.steps)


class NanPair(ShiftedPair):
    """The toy pair with one NaN voxel in the fixed image: every gradient becomes NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.pair.fixed[0, 5, 5, 5] = float("nan")


def test_an_update_with_non_finite_gradients_is_skipped_and_recorded():
    config = TrainingConfig(steps=2, batch_size=1, validate_every=100, checkpoint_every=100)
    model, optimizer = new_model_and_optimizer(SMALL, config, CPU)
    before = parameters(model)
    history = train(model, optimizer, NanPair(), config, progress=False)
    assert history.skipped_steps == [0, 1]
    assert all(torch.equal(a, b) for a, b in zip(before, parameters(model)))
    finite = train(model, optimizer, ShiftedPair(), dataclasses.replace(config, steps=3), start_step=2,
                   history=history, progress=False)
    assert finite.skipped_steps == [0, 1] and np.isfinite(finite.loss[2])
    assert any(not torch.equal(a, b) for a, b in zip(before, parameters(model)))


def write_participant_output(root, pairs: dict[str, str], shape=(32, 32, 32)) -> None:
    """A participant run's output folder as --save-intermediates leaves it: records and halfway crops.

    ``pairs``: subject label -> status; pairs of status 'ok' get their intermediates, except
    subject 'bare' whose crops are missing.
    """
    from brainlossnet.bids_app.derivatives import intermediate_paths, pair_json_path

    for index, (subject, status) in enumerate(pairs.items()):
        record = {"participant_id": f"sub-{subject}", "session_bl": "1", "session_fu": "2", "status": status}
        record_path = pair_json_path(root, subject, "1", "2")
        record_path.parent.mkdir(parents=True, exist_ok=True)
        record_path.write_text(json.dumps(record))
        if status != "ok" or subject == "bare":
            continue
        image, mask = phantom(shape, seed=index)
        paths = intermediate_paths(root, subject, "1", "2")
        for key, array in (("bl_halfway", 1000 * image), ("fu_halfway", 1100 * image),
                           ("bl_intracranial", mask), ("fu_intracranial", mask)):
            nib.save(nib.Nifti1Image(np.asarray(array, dtype=np.float32), np.eye(4)), paths[key])


def test_cli_trains_on_the_real_pairs_of_a_participant_output(tmp_path, capsys):
    derivatives = tmp_path / "derivatives"
    write_participant_output(derivatives, {"01": "ok", "02": "ok", "03": "failed", "bare": "ok"})
    run_dir = tmp_path / "run"
    code = train_cli.main(["--real-pairs", str(derivatives), "--holdout", "sub-02", "--cache-dir", str(tmp_path / "cache"),
                           "--output-dir", str(run_dir), "--steps", "2", "--batch-size", "1", "--patch-shape", "16", "16", "16",
                           "--validate-every", "2", "--no-progress", "--correlation-radius", "1",
                           "--export", str(tmp_path / "weights")])
    assert code == 0
    err = capsys.readouterr().err
    assert "sub-03 1->2: status failed, left out" in err and "sub-bare 1->2: no" in err
    history = json.loads((run_dir / train_cli.HISTORY_NAME).read_text())
    assert history["step"] == 2 and len(history["history"]["loss"]) == 2
    assert history["run"]["real_pairs"]["train"] == 1 and history["run"]["real_pairs"]["holdout"] == ["sub-02 1->2"]
    record = history["history"]["validation"][-1]
    assert np.isfinite(record["ncc_after"]) and "field_error_mm" not in record  # a real pair has no known field
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 6  # BL, FU and mask of both usable pairs
    assert "Real BL/FU pairs in halfway space" in (tmp_path / "weights" / "MODEL_CARD.md").read_text()
    exported = torch.load(tmp_path / "weights" / "registration_unet.pt", weights_only=True)
    assert exported["config"]["correlation_radius_vox"] == 1


def test_cli_refuses_real_pairs_it_cannot_use(tmp_path, capsys):
    empty = tmp_path / "empty"
    write_participant_output(empty, {"01": "failed"})
    common = ["--cache-dir", str(tmp_path / "cache"), "--output-dir", str(tmp_path / "run")]
    assert train_cli.main(["--real-pairs", str(empty), *common]) == 66
    assert "no pair with saved halfway crops" in capsys.readouterr().err
    assert train_cli.main(["--real-pairs", str(tmp_path / "absent"), *common]) == 66
    assert train_cli.main(["--real-pairs", str(empty), "--real-fraction", "0.3", *common]) == 64  # no --scans to mix with
    good = tmp_path / "good"
    write_participant_output(good, {"01": "ok"})
    assert train_cli.main(["--real-pairs", str(good), "--holdout", "sub-09", *common]) == 64
    assert train_cli.main(["--real-pairs", str(good), "--holdout", "sub-01", *common]) == 64  # nothing left to train on
