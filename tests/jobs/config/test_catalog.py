"""The committed catalog of TRL's settings matches the pinned TRL (regenerate with `make catalog`)."""

from __future__ import annotations

from jobs.config.catalog import build_catalog, load_catalog
from jobs.methods import METHODS


def test_catalog_is_current_with_installed_trl() -> None:
    assert build_catalog() == load_catalog(), "jobs/config/settings_catalog.json is stale: run `make catalog`"


def test_catalog_has_a_group_per_registered_method_and_the_model() -> None:
    catalog = load_catalog()
    assert set(catalog) == {"training", "model", *METHODS}
    assert {"learning_rate", "per_device_train_batch_size", "max_grad_norm"} <= set(catalog["training"]) | set(
        catalog["sft"]
    )
    assert "beta" in catalog["dpo"] and "packing" in catalog["sft"]
    assert {"use_peft", "lora_r", "load_in_4bit"} <= set(catalog["model"])
    assert catalog["training"]["lr_scheduler_type"]["kind"] == "choice"
