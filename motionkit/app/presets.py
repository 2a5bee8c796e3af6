"""Which few-step presets (``motionkit.pipeline.few_step``) a models folder can run, and why the others cannot.

A preset is made for one distilled motion module (AnimateLCM, AnimateDiff-Lightning N-step) and, for
AnimateLCM, its spatial LoRA on the base. The page offers a preset only when the folder holds that module
among its adapters (recognised by file name, as the command line recognises the LoRA) and the LoRA among
its image LoRAs; a request with a preset is refused unless that adapter and LoRA are the ones chosen.
"""

from __future__ import annotations

import re
from pathlib import Path

from motionkit.app.models import KINDS, ModelsFolder
from motionkit.pipeline.few_step import PRESETS, FewStepPreset, missing_lora


def _squashed(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def made_for(preset: FewStepPreset, adapter: Path) -> bool:
    """Whether ``adapter`` (a file or folder) is the motion module ``preset`` is made for, by its name."""
    name = _squashed(adapter.name)
    if preset.name.startswith("lightning-"):
        # "4step" must not match "14step": the digits before it are the step count.
        return "lightning" in name and re.search(rf"(?<!\d){preset.steps}step", name) is not None
    return _squashed(preset.name) in name


def preset_problem(preset: FewStepPreset, adapter: Path, image_loras: list[Path]) -> str | None:
    """None when ``preset`` fits the chosen adapter and image LoRAs; otherwise what to choose instead."""
    if not made_for(preset, adapter):
        return (
            f"it is made for the motion module {preset.motion_module} and the adapter chosen is not it: "
            f"choose that adapter (from {KINDS['adapter'][0]}/) or no preset"
        )
    if missing_lora(preset, [str(path) for path in image_loras]) is not None:
        return (
            f"it needs its LoRA {preset.lora} at {preset.lora_scale} on the base: choose it as the image LoRA "
            f"(from {KINDS['image_lora'][0]}/) or no preset"
        )
    return None


def offered_presets(models: ModelsFolder) -> tuple[list[str], str]:
    """The presets the folder can run (by name), and one line on those it cannot (empty when it runs them all)."""
    adapters = list(models.listing("adapter").values())
    loras = [str(path) for path in models.listing("image_lora").values()]
    offered, missing = [], []
    for name, preset in PRESETS.items():
        if not any(made_for(preset, adapter) for adapter in adapters):
            missing.append(f"{name} (needs {preset.motion_module} in {KINDS['adapter'][0]}/)")
        elif missing_lora(preset, loras) is not None:
            missing.append(f"{name} (needs {preset.lora} in {KINDS['image_lora'][0]}/)")
        else:
            offered.append(name)
    note = f"Not available with these models: {'; '.join(missing)}." if missing else ""
    return offered, note
