"""A training process builds from the resolved run and checks only that torch sees the parent's device."""

from __future__ import annotations

import pytest

from jobs.config.defaults import Device
from jobs.errors import EnvironmentProblem
from jobs.train import trainer


def test_on_this_machine_torch_sees_what_the_parents_nvml_probe_saw() -> None:
    trainer.check_device(Device.probe_cheaply())  # the real probes: NVML's, then torch's


def test_an_older_gpu_is_a_gpu_without_bf16_to_both_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A T4 (compute capability 7.5): NVML's rule gives no bf16, and so must torch's, although torch's own
    is_bf16_supported says yes (emulated). No GPU exists here: torch's answers are stood in for."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    trainer.check_device(Device(gpu=True, bf16=False))  # what NVML reports for capability 7


@pytest.mark.parametrize(
    ("parent", "torch_sees"),
    [
        pytest.param(Device(gpu=True, bf16=True), Device(gpu=False, bf16=False), id="gpu-node-cpu-torch"),
        pytest.param(Device(gpu=True, bf16=True), Device(gpu=True, bf16=False), id="bf16-mismatch"),
    ],
)
def test_another_device_in_the_training_process_exits_4(
    parent: Device, torch_sees: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No GPU exists here: what torch sees is stood in for."""
    monkeypatch.setattr(Device, "probe_torch", classmethod(lambda cls: torch_sees))
    with pytest.raises(EnvironmentProblem) as refused:
        trainer.check_device(parent)
    assert refused.value.exit_code == 4
    assert parent.description in str(refused.value) and torch_sees.description in str(refused.value)
