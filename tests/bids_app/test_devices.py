"""--device/--gpus on the command line, and CUDA never touched by the parent process."""

import subprocess
import sys
import textwrap

import pytest

from brainlossnet.bids_app.cli.parser import EXIT_USAGE, parse_args

BASE = ["bids", "out", "participant"]


def test_gpu_options_parse():
    opts = parse_args([*BASE, "--gpus", "0,1", "--max-gpu-tasks-per-device", "2"])
    assert opts.gpus == (0, 1) and opts.max_gpu_tasks_per_device == 2 and opts.device == "auto"
    opts = parse_args(BASE)
    assert opts.gpus is None and opts.max_gpu_tasks_per_device == 1


@pytest.mark.parametrize("extra", [
    ["--gpus", "0,0"], ["--gpus", "x"], ["--gpus", "0", "--device", "cpu"], ["--gpus", "0", "--device", "cuda:1"],
    ["--gpus", "0", "--plugin", "slurm"], ["--max-gpu-tasks-per-device", "0"], ["--device", "gpu"],
])
def test_bad_device_options_are_usage_errors(extra, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args([*BASE, *extra])
    assert exit_.value.code == EXIT_USAGE
    assert "error" in capsys.readouterr().err


def test_parsing_and_slot_assignment_do_not_import_torch():
    code = textwrap.dedent("""
        import sys
        from brainlossnet.bids_app.cli.parser import parse_args
        from brainlossnet.workflows.device_slots import assign_slots, device_slots
        opts = parse_args(["b", "o", "participant", "--gpus", "0,1", "--max-gpu-tasks-per-device", "2"])
        slots = device_slots(opts.device, opts.gpus, opts.max_gpu_tasks_per_device, 8)
        assign_slots(10, len(slots))
        print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_run_never_initialises_cuda_in_the_parent(tiny_run, tmp_path):
    """Trap every torch.cuda entry that creates a CUDA context, then run the app in-process."""
    import torch

    from brainlossnet.bids_app.run import main

    calls = []
    originals = {name: getattr(torch.cuda, name) for name in ("_lazy_init", "is_available", "device_count", "init")}

    def trap(name):
        def record(*args, **kwargs):
            calls.append(name)
            return originals[name](*args, **kwargs)
        return record

    try:
        for name in originals:
            setattr(torch.cuda, name, trap(name))
        args = tiny_run.app_args()
        args[1] = str(tmp_path / "out")  # fresh outputs; stages come from the shared cache
        assert main(args) == 0
    finally:
        for name, function in originals.items():
            setattr(torch.cuda, name, function)
    assert calls == []
    assert not torch.cuda.is_initialized()


def test_gpus_send_cuda_devices_to_the_register_stage(tiny_run):
    """On a machine without CUDA, cuda:N reaches the register stage and fails there, per pair."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the device string by the error it gives on a machine without CUDA")

    from brainlossnet.workflows.participant import PairSpec, PipelineOptions, run_pairs

    specs = [PairSpec(subject, "01", "02", *sorted(tiny_run.bids_dir.glob(f"sub-{subject}/ses-*/anat/*_T1w.nii.gz")))
             for subject in ("01", "02")]
    options = PipelineOptions(device="auto", crop_shape=(96, 112, 112))
    results = run_pairs(specs, work_dir=tiny_run.work_dir, options=options,
                        nprocs=2, gpus=(0, 1), max_gpu_tasks_per_device=1)
    assert [r.status for r in results] == ["failed", "failed"]
    for result in results:
        assert result.message.startswith("register"), result.message
        assert "CUDA" in result.message or "cuda" in result.message
