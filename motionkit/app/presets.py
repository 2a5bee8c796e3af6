"""Which few-step presets (``motionkit.pipeline.few_step``) a models folder can run, and why the others cannot.

A preset is made for one distilled motion module (AnimateLCM, AnimateDiff-Lightning N-step) and, for
AnimateLCM, its spatial LoRA on the base. The page offers a preset only when the folder holds that module
among its adapters (recognised by file name, as the command line recognises the LoRA) and the LoRA among
its image LoRAs; a request with a preset is refused unless that adapter and LoRA are the ones chosen.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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
    offered, no_module, no_lora = [], [], []
    for name, preset in PRESETS.items():
        if not any(made_for(preset, adapter) for adapter in adapters):
            no_module.append(preset)
        elif missing_lora(preset, loras) is not None:
            no_lora.append(preset)
        else:
            offered.append(name)
    adapters_dir, loras_dir = KINDS["adapter"][0], KINDS["image_lora"][0]
    lightning = [preset for preset in no_module if preset.name.startswith("lightning-")]
    parts = [f"{p.name} needs {p.motion_module} in {adapters_dir}/" for p in no_module if p not in lightning]
    if lightning:  # one line for the family: their files differ only in the step count
        pattern = lightning[0].motion_module.replace(f"_{lightning[0].steps}step", "_Nstep")
        parts.append(f"{', '.join(p.name for p in lightning)} need {pattern} (N: their steps) in {adapters_dir}/")
    parts += [f"{p.name} needs its LoRA {p.lora} in {loras_dir}/" for p in no_lora]
    return offered, f"Not available with these models: {'; '.join(parts)}." if parts else ""


def preset_form(models: ModelsFolder, name: str) -> dict[str, Any]:
    """The form fields choosing preset ``name`` fills in: its scheduler, steps and guidance, the first adapter
    made for it and, when it needs one, its LoRA as the image LoRA at its scale (fields it cannot fill are left out)."""
    preset = PRESETS[name]
    fields: dict[str, Any] = {"scheduler": preset.scheduler, "steps": preset.steps, "guidance": preset.guidance}
    adapter = next((n for n, path in models.listing("adapter").items() if made_for(preset, path)), None)
    if adapter is not None:
        fields["adapter"] = adapter
    if preset.lora is not None:
        lora = next((n for n, path in models.listing("image_lora").items() if missing_lora(preset, [str(path)]) is None), None)
        if lora is not None:
            fields["image_lora"], fields["image_lora_scale"] = lora, preset.lora_scale
    return fields
