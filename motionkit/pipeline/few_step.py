"""Few-step presets: the scheduler, steps, guidance and LoRA that distilled motion modules were made for.

| preset | motion module it is made for | scheduler | steps | guidance | LoRA |
| --- | --- | --- | --- | --- | --- |
| ``animatelcm`` | ``AnimateLCM_sd15_t2v.ckpt`` (wangfuyun/AnimateLCM) | LCM, linear betas | 6 | 2.0 | ``AnimateLCM_sd15_t2v_lora.safetensors`` at 0.8 (spatial, on the base model) |
| ``lightning-N`` (N = 1, 2, 4, 8) | ``animatediff_lightning_Nstep_diffusers.safetensors`` (ByteDance/AnimateDiff-Lightning) | Euler, ``timestep_spacing="trailing"``, linear betas | N | 1.0 (no guidance) | none |

The settings follow the models' own usage: AnimateLCM's README runs ``LCMScheduler.from_config(...,
beta_schedule="linear")`` with its LoRA at 0.8, guidance 1-2 and 4-8 steps; AnimateDiff-Lightning's model
card runs ``EulerDiscreteScheduler.from_config(..., timestep_spacing="trailing", beta_schedule="linear")``
with ``guidance_scale=1.0`` and as many steps as the checkpoint was distilled for. A preset sets these;
steps and guidance given explicitly win. The LoRA is a file the user supplies (``--lora PATH:0.8``):
motionkit downloads nothing, so ``missing_lora`` says so when it is not given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motionkit.errors import MotionkitError


@dataclass(frozen=True)
class FewStepPreset:
    name: str
    scheduler: str  # a motionkit.pipeline.schedulers name
    steps: int
    guidance: float
    motion_module: str  # the file the preset is made for
    scheduler_overrides: dict[str, Any] = field(default_factory=dict)
    lora: str | None = None  # the LoRA file it needs on the base model, and its scale
    lora_scale: float | None = None

    def make_scheduler(self, base_config: Any = None, family: str = "sd") -> Any:
        from motionkit.pipeline.schedulers import make_scheduler

        return make_scheduler(self.scheduler, base_config, family=family, **self.scheduler_overrides)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "scheduler": self.scheduler, "scheduler_overrides": dict(self.scheduler_overrides),
            "steps": self.steps, "guidance": self.guidance, "lora": self.lora, "lora_scale": self.lora_scale,
        }


def _lightning(steps: int) -> FewStepPreset:
    return FewStepPreset(
        f"lightning-{steps}", "euler", steps, 1.0, f"animatediff_lightning_{steps}step_diffusers.safetensors",
        {"timestep_spacing": "trailing"},
    )


PRESETS: dict[str, FewStepPreset] = {
    "animatelcm": FewStepPreset(
        "animatelcm", "lcm", 6, 2.0, "AnimateLCM_sd15_t2v.ckpt",
        lora="AnimateLCM_sd15_t2v_lora.safetensors", lora_scale=0.8,
    ),
    **{f"lightning-{n}": _lightning(n) for n in (1, 2, 4, 8)},
}


def get_preset(name: str) -> FewStepPreset:
    key = str(name).strip().lower()
    if key not in PRESETS:
        raise MotionkitError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[key]


def apply_preset(pipe: Any, name: str | FewStepPreset) -> FewStepPreset:
    """Give ``pipe`` the preset's scheduler; returns the preset (its ``steps`` / ``guidance`` are the call's defaults)."""
    preset = name if isinstance(name, FewStepPreset) else get_preset(name)
    pipe.scheduler = preset.make_scheduler(pipe.scheduler.config, family=getattr(pipe, "family", "sd"))
    return preset


def missing_lora(preset: FewStepPreset, lora_paths: list[str]) -> str | None:
    """One line when the preset needs a LoRA and none of ``lora_paths`` looks like it (by file name); else ``None``."""
    if preset.lora is None:
        return None
    wanted = Path(preset.lora).stem.lower()
    if any(wanted in Path(p).name.lower() or "animatelcm" in Path(p).name.lower() for p in lora_paths):
        return None
    given = f"the LoRAs given ({', '.join(Path(p).name for p in lora_paths)}) do not look like it" if lora_paths else "none was given"
    return (
        f"preset {preset.name} is made for {preset.motion_module} with its spatial LoRA {preset.lora} at {preset.lora_scale}: "
        f"{given}; pass --lora PATH/{preset.lora}:{preset.lora_scale} (motionkit downloads nothing)"
    )


def preset_settings(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """The settings a preset picks (``scheduler``, ``steps``, ``guidance``) where ``given`` (the options set
    explicitly, by flag or batch file) does not pick them itself."""
    preset = get_preset(name)
    chosen = {"scheduler": preset.scheduler, "steps": preset.steps, "guidance": preset.guidance}
    return {k: v for k, v in chosen.items() if given.get(k) is None}
