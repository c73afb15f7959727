"""A training process builds from the resolved run and checks only that torch sees the parent's device."""

from __future__ import annotations

import pytest

from jobs.config.defaults import Device
from jobs.errors import EnvironmentProblem
from jobs.train import trainer


def test_torch_seeing_the_device_the_parent_saw_passes() -> None:
    trainer.check_device(Device.probe_torch())


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
