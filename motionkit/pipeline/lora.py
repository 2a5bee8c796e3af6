"""Personalized image LoRAs (character, style) on the base model, several at once, through diffusers + peft.

Files are read by motionkit's safe reader (safetensors, or weights-only ``.ckpt``) and handed to diffusers'
``lora_state_dict``, which understands diffusers/peft, kohya and A1111 layouts; each LoRA becomes a named
peft adapter and ``set_adapters`` weighs them. AnimateDiff v3's domain adapter (``v3_sd15_adapter.ckpt``)
is an image LoRA in the attention-processor layout with keys relative to the UNet, which diffusers would
skip for lack of a ``unet.`` prefix: it is converted here first. A LoRA that matches no layer is refused.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from motionkit.errors import FormatError, MotionkitError

# ``down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight``: diffusers'
# LoRAAttnProcessor layout, keyed from the UNet itself (AnimateDiff v3's domain adapter).
_PROCESSOR_KEY = re.compile(
    r"^(?P<module>(?:down_blocks|up_blocks|mid_block)\..+?)\.processor\."
    r"(?P<proj>to_q|to_k|to_v|to_out)_lora\.(?P<side>down|up)\.weight$"
)
_SCALE = re.compile(r"^(?P<path>.+):(?P<scale>[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)$")


def parse_lora_spec(spec: str) -> tuple[str, float]:
    """``PATH`` or ``PATH:SCALE`` (scale defaults to 1.0) -> ``(path, scale)``."""
    spec = spec.strip()
    if not spec:
        raise MotionkitError("empty --lora value: give PATH or PATH:SCALE, e.g. style.safetensors:0.8")
    match = _SCALE.match(spec)
    if match:
        return match["path"], float(match["scale"])
    # A ':' not followed by a number is an error unless it belongs to the path (an existing file, C:\...).
    if ":" in spec and not Path(spec).exists() and not re.match(r"^[A-Za-z]:[\\/]", spec):
        raise MotionkitError(f"bad --lora value {spec!r}: the scale after ':' must be a number, e.g. style.safetensors:0.8")
    return spec, 1.0


def _parts(target: Any) -> dict[str, Any]:
    """The UNet and text encoders of a pipeline, a components dict, or a ``(unet, text_encoder[, text_encoder_2])`` tuple."""
    if isinstance(target, dict):
        parts = {k: target.get(k) for k in ("unet", "text_encoder", "text_encoder_2")}
    elif isinstance(target, (tuple, list)):
        parts = dict(zip(("unet", "text_encoder", "text_encoder_2"), target))
    else:
        parts = {k: getattr(target, k, None) for k in ("unet", "text_encoder", "text_encoder_2")}
    if parts.get("unet") is None:
        raise MotionkitError("apply_loras needs a UNet: pass a pipeline, its components dict, or (unet, text_encoder)")
    # With a motion adapter injected the UNet is wrapped; LoRAs go into the image UNet inside.
    parts["unet"] = getattr(parts["unet"], "unet", parts["unet"])
    return parts


def unet_processor_lora_to_peft(tensors: dict[str, Any]) -> dict[str, Any] | None:
    """A UNet LoRA in the attention-processor layout without a ``unet.`` prefix as ``unet.``-prefixed PEFT keys;
    ``None`` for any other layout. AnimateDiff applies such a file as ``W += scale * up @ down`` (no alpha), which
    PEFT factors with ``lora_alpha == rank`` compute at adapter weight ``scale``."""
    if not tensors or not all(_PROCESSOR_KEY.match(k) for k in tensors):
        return None
    out = {}
    for key, value in tensors.items():
        m = _PROCESSOR_KEY.match(key)
        proj = "to_out.0" if m["proj"] == "to_out" else m["proj"]
        out[f"unet.{m['module']}.{proj}.lora_{'A' if m['side'] == 'down' else 'B'}.weight"] = value
    return out


def _loaded(model: Any, name: str) -> bool:
    return name in (getattr(model, "peft_config", None) or {})


def _adapter_name(index: int, path: Path) -> str:
    return f"lora{index}_" + re.sub(r"\W", "_", path.stem)[:40]


def lora_adapter_names(loras: Sequence[tuple[str | Path, float]]) -> list[str]:
    """The peft adapter names ``apply_loras(target, loras)`` gives, in order."""
    return [_adapter_name(index, Path(path)) for index, (path, _) in enumerate(loras)]


def apply_loras(target: Any, loras: Sequence[tuple[str | Path, float]]) -> list[str]:
    """Load every ``(path, scale)`` LoRA into the UNet and text encoder(s) of ``target`` and activate them
    all at their scales. Returns the adapter names (peft), in order.

    ``target``: a pipeline, a components dict (``load_base`` output) or ``(unet, text_encoder[, text_encoder_2])``.
    Raises ``FormatError`` in one line for files that hold no LoRA or that do not fit the base.
    """
    from diffusers.loaders import StableDiffusionLoraLoaderMixin, StableDiffusionXLLoraLoaderMixin
    from diffusers.loaders.lora_base import set_adapters_for_text_encoder

    import torch

    from motionkit.formats.safe_load import read_tensor_file

    parts = _parts(target)
    unet, encoders = parts["unet"], {k: v for k, v in parts.items() if k != "unet" and v is not None}
    loader = StableDiffusionXLLoraLoaderMixin if "text_encoder_2" in encoders else StableDiffusionLoraLoaderMixin
    names: list[str] = []
    for index, (path, _scale) in enumerate(loras):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such LoRA file; check the --lora path")
        tensors, _ = read_tensor_file(path)
        tensors = tensors.get("state_dict", tensors) if isinstance(tensors.get("state_dict"), dict) else tensors
        # Training checkpoints carry plain entries (animatediff_config, global_step) beside the weights.
        tensors = {k: v for k, v in tensors.items() if isinstance(v, torch.Tensor)}
        tensors = unet_processor_lora_to_peft(tensors) or tensors
        name = _adapter_name(index, path)
        try:
            with warnings.catch_warnings():
                # peft warns whenever a model gains a second adapter, which is the point here.
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                state_dict, alphas = loader.lora_state_dict(dict(tensors))
                if not state_dict or not all("lora" in key for key in state_dict):
                    raise ValueError("no LoRA weights (key names without 'lora')")
                loader.load_lora_into_unet(state_dict, alphas, unet=unet, adapter_name=name)
                for prefix, encoder in encoders.items():
                    loader.load_lora_into_text_encoder(
                        state_dict, alphas, text_encoder=encoder, prefix=prefix, adapter_name=name
                    )
        except (ValueError, KeyError, RuntimeError) as err:
            detail = (str(err).splitlines() or [type(err).__name__])[0][:200]
            raise FormatError(f"{path}: not an image LoRA for this base model ({detail}); check the file and the base family") from None
        if not any(_loaded(model, name) for model in (unet, *encoders.values())):
            sample = next(iter(tensors), "none")
            hint = "motion LoRAs go to --motion-lora" if ".motion_modules." in sample else "check the file and the base family"
            raise FormatError(
                f"{path}: no layer of the base model matched this LoRA (keys like {sample!r}), so it would change "
                f"nothing: {hint}"
            )
        names.append(name)
    scales = [float(scale) for _, scale in loras]
    for model in (unet, *encoders.values()):
        loaded = getattr(model, "peft_config", None) or {}
        active = [(n, s) for n, s in zip(names, scales) if n in loaded]
        if not active:
            continue
        if model is unet:
            unet.set_adapters([n for n, _ in active], weights=[s for _, s in active])
        else:
            set_adapters_for_text_encoder([n for n, _ in active], model, [s for _, s in active])
    return names


def remove_loras(target: Any, names: Sequence[str]) -> None:
    """Take the LoRAs ``names`` (as ``apply_loras`` returned them) out of ``target``'s UNet and text encoder(s),
    as diffusers' ``delete_adapters`` does: the models compute exactly what they did before."""
    from diffusers.utils.peft_utils import delete_adapter_layers

    parts = _parts(target)
    for model in parts.values():
        loaded = getattr(model, "peft_config", None) or {}
        present = [name for name in names if name in loaded]
        if not present:
            continue
        if hasattr(model, "delete_adapters"):  # diffusers models
            model.delete_adapters(present)
        else:  # transformers text encoders
            for name in present:
                delete_adapter_layers(model, name)
