"""Motion LoRAs: low-rank updates to the temporal attentions' ``to_q / to_k / to_v / to_out.0``.

Reads the original v2 camera-motion files (``...attention_blocks.0.processor.to_q_lora.down.weight``),
diffusers' converted ones (``unet.`` prefix, ``attn1/attn2`` names, same ``_lora.down/up``) and PEFT
files (``...to_q.lora_A.weight``). Applies them through the adapter's PEFT integration, several at
once under names, each with its own scale. Saves PEFT keys with the ``unet.`` prefix, which both
motionkit and diffusers' ``load_lora_weights`` read.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from motionkit.errors import FormatError, LayoutMismatchError, MotionkitError
from motionkit.formats.keys import diffusers_to_motionkit_key, motionkit_to_diffusers_key

_PROJ = r"(?P<proj>to_q|to_k|to_v|to_out)(?:\.0)?"
_WEIGHT = re.compile(
    rf"^(?P<mod>.+)\.{_PROJ}(?:_lora\.(?P<old>down|up)|\.lora\.(?P<new>down|up)|\.lora_(?P<peft>A|B))\.weight$"
)
_ALPHA = re.compile(rf"^(?P<mod>.+)\.{_PROJ}(?:_lora|\.lora)?\.alpha$")
FORMAT_TAG = "motionkit-motion-lora"
PREFIX = "unet."


@dataclass
class MotionLoRA:
    """LoRA factors per target module (motionkit module path, e.g. ``...attention_blocks.0.to_q``):
    ``W += scale * multiplier * up @ down``; ``multipliers`` holds alpha/rank where a file stores alphas."""

    down: dict[str, torch.Tensor]
    up: dict[str, torch.Tensor]
    multipliers: dict[str, float] = field(default_factory=dict)
    source: str = "motionkit"

    @property
    def targets(self) -> list[str]:
        return sorted(self.down)

    @property
    def ranks(self) -> dict[str, int]:
        return {k: int(v.shape[0]) for k, v in self.down.items()}

    def delta(self, target: str) -> torch.Tensor:
        """The full weight update of one target at scale 1."""
        return self.multipliers.get(target, 1.0) * (self.up[target].float() @ self.down[target].float())


def _to_motionkit_module(module: str, proj: str) -> str:
    module = module.removeprefix(PREFIX).replace(".processor", "")
    if ".temporal_transformer." not in module and re.search(r"\.attn\d+$", module):
        # diffusers naming: convert through a dummy parameter so keys.py's patterns see a full key.
        module = diffusers_to_motionkit_key(module + ".to_q.weight").removesuffix(".to_q.weight")
    return f"{module}.{'to_out.0' if proj == 'to_out' else proj}"


def lora_from_state_dict(tensors: dict[str, Any], where: str = "motion LoRA") -> MotionLoRA:
    down: dict[str, torch.Tensor] = {}
    up: dict[str, torch.Tensor] = {}
    alphas: dict[str, float] = {}
    unknown = []
    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            continue
        if m := _WEIGHT.match(key):
            target = _to_motionkit_module(m.group("mod"), m.group("proj"))
            side = m.group("old") or m.group("new") or {"A": "down", "B": "up"}[m.group("peft")]
            (down if side == "down" else up)[target] = value
        elif m := _ALPHA.match(key):
            alphas[_to_motionkit_module(m.group("mod"), m.group("proj"))] = float(value)
        else:
            unknown.append(key)
    if unknown:
        shown = ", ".join(repr(k) for k in unknown[:3])
        raise FormatError(f"{where}: {len(unknown)} keys are not attention-LoRA factors (e.g. {shown}): not a motion LoRA")
    if not down:
        raise FormatError(f"{where}: no LoRA factors found: expected ...to_q_lora.down.weight or ...to_q.lora_A.weight keys")
    spatial = [t for t in down if ".motion_modules." not in t]
    if spatial:
        raise FormatError(
            f"{where}: targets the image UNet's attentions (e.g. {spatial[0]!r}), so it is a spatial LoRA such as the "
            "v3 domain adapter: pass it as an image LoRA (motionkit animate --lora, motionkit.pipeline.lora.apply_loras)"
        )
    if set(down) != set(up):
        odd = sorted(set(down) ^ set(up))
        raise FormatError(f"{where}: {len(odd)} targets have only one LoRA factor (e.g. {odd[0]!r}): the file is incomplete")
    for target in down:
        d, u = down[target], up[target]
        if d.ndim != 2 or u.ndim != 2 or d.shape[0] != u.shape[1]:
            raise FormatError(
                f"{where}: factors of {target!r} have shapes {tuple(d.shape)} and {tuple(u.shape)}, which do not form a LoRA"
            )
    multipliers = {t: alphas[t] / down[t].shape[0] for t in alphas if t in down}
    return MotionLoRA(down, up, multipliers)


def load_motion_lora(path: str | Path) -> MotionLoRA:
    """Read a motion LoRA file (original v2 ``.ckpt``/``.safetensors``, diffusers-converted or PEFT)."""
    from motionkit.formats.animatediff import unwrap
    from motionkit.formats.safe_load import read_tensor_file

    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        if len(candidates) != 1:
            raise FormatError(f"{path}: expected one LoRA weights file in the folder, found {len(candidates)}: point at the file")
        path = candidates[0]
    obj, metadata = read_tensor_file(path)
    tensors, _ = unwrap(obj)
    lora = lora_from_state_dict(tensors, str(path))
    keys = list(tensors)
    if metadata.get("format") == FORMAT_TAG:
        lora.source = "motionkit"
    elif any(".lora_A." in k for k in keys):
        lora.source = "peft"
    elif any(k.startswith(PREFIX) or ".attn1." in k for k in keys):
        lora.source = "diffusers"
    else:
        lora.source = "animatediff"
    return lora


def describe_lora(ckpt: Any) -> Any:
    """``FormatInfo`` for a motion-LoRA file (used by ``detect_format``)."""
    from motionkit.formats.checkpoint import FormatInfo, main_dtype

    lora = lora_from_state_dict(ckpt.tensors, str(ckpt.path))
    keys = list(ckpt.tensors)
    source = "peft" if any(".lora_A." in k for k in keys) else "diffusers" if any(".attn1." in k for k in keys) else "animatediff"
    ranks = sorted(set(lora.ranks.values()))
    return FormatInfo(
        path=str(ckpt.path),
        format="motion-lora",
        container=ckpt.container,
        version=source,
        layout=f"{len(lora.targets)} attention projections, rank {'/'.join(map(str, ranks))}",
        dtype=main_dtype(ckpt.tensors),
        parameters=sum(t.numel() for t in [*lora.down.values(), *lora.up.values()]),
        tensors=len(ckpt.tensors),
    )


# -- applying -------------------------------------------------------------------------------------

_SCALES_ATTR = "_motion_lora_scales"


def _scales(adapter: Any) -> dict[str, float]:
    scales = getattr(adapter, _SCALES_ATTR, None)
    if scales is None:
        scales = {}
        setattr(adapter, _SCALES_ATTR, scales)
    return scales


def _activate(adapter: Any) -> None:
    scales = _scales(adapter)
    if scales:
        names = list(scales)
        adapter.set_adapters(names, [scales[n] for n in names])


def apply_motion_lora(adapter: Any, lora: MotionLoRA | str | Path, scale: float = 1.0, name: str | None = None) -> str:
    """Add ``lora`` to ``adapter`` under ``name`` (default ``lora_N``) with ``scale``; returns the name.

    Several LoRAs stack (their updates add up). ``scale=0`` leaves outputs unchanged; ``remove_motion_lora``
    takes a LoRA off again.
    """
    from peft import LoraConfig

    if not isinstance(lora, MotionLoRA):
        lora = load_motion_lora(lora)
    scales = _scales(adapter)
    if name is None:
        name = next(f"lora_{i}" for i in range(len(scales) + 1) if f"lora_{i}" not in scales)
    if name in scales or name in (getattr(adapter, "peft_config", None) or {}):
        raise MotionkitError(f"a motion LoRA named {name!r} is already applied: pick another name or remove it first")
    modules = dict(adapter.named_modules())
    absent = [t for t in lora.targets if t not in modules]
    if absent:
        raise LayoutMismatchError(
            f"the LoRA targets {len(absent)} attention projections the adapter lacks (e.g. {absent[0]!r}): "
            "use it with the motion adapter it was trained for"
        )
    for target in lora.targets:
        layer = modules[target]
        layer = getattr(layer, "base_layer", layer)
        want = (lora.down[target].shape[1], lora.up[target].shape[0])
        if (layer.in_features, layer.out_features) != want:
            raise LayoutMismatchError(
                f"the LoRA's {target!r} maps {want[0]}->{want[1]} channels but the adapter's maps "
                f"{layer.in_features}->{layer.out_features}: use it with the motion adapter it was trained for"
            )
    ranks = lora.ranks
    rank = max(set(ranks.values()), key=list(ranks.values()).count)
    config = LoraConfig(
        r=rank,
        lora_alpha=rank,  # scaling 1: alphas are folded into the up factors below
        target_modules=lora.targets,
        rank_pattern={t: r for t, r in ranks.items() if r != rank},
        alpha_pattern={t: r for t, r in ranks.items() if r != rank},
        init_lora_weights=False,
    )
    with warnings.catch_warnings():
        # peft warns whenever a second adapter joins the first; stacking is the point here.
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        adapter.add_adapter(config, adapter_name=name)
    modules = dict(adapter.named_modules())
    with torch.no_grad():
        for target in lora.targets:
            layer = modules[target]
            a, b = layer.lora_A[name].weight, layer.lora_B[name].weight
            a.copy_(lora.down[target].to(a.dtype))
            b.copy_((lora.up[target].float() * lora.multipliers.get(target, 1.0)).to(b.dtype))
    scales[name] = float(scale)
    _activate(adapter)
    return name


def set_motion_lora_scale(adapter: Any, name: str, scale: float) -> None:
    scales = _scales(adapter)
    if name not in scales:
        raise MotionkitError(f"no motion LoRA named {name!r} is applied (applied: {', '.join(scales) or 'none'})")
    scales[name] = float(scale)
    _activate(adapter)


def remove_motion_lora(adapter: Any, name: str | None = None) -> None:
    """Take off the LoRA ``name`` (all of them when ``None``). With none left the adapter's modules are
    exactly what they were before the first ``apply_motion_lora``."""
    scales = _scales(adapter)
    if name is not None and name not in scales:
        raise MotionkitError(f"no motion LoRA named {name!r} is applied (applied: {', '.join(scales) or 'none'})")
    names = list(scales) if name is None else [name]
    for n in names:
        scales.pop(n)
    if scales:
        adapter.delete_adapters(names)
        _activate(adapter)
    elif getattr(adapter, "peft_config", None):
        adapter.unload_lora()  # swaps every LoRA wrapper back for its original layer


def lora_from_adapter(adapter: Any, name: str) -> MotionLoRA:
    """The factors of an applied LoRA (for example one just trained), scale folded out."""
    from peft.tuners.lora import LoraLayer

    down, up, multipliers = {}, {}, {}
    for module_name, module in adapter.named_modules():
        if isinstance(module, LoraLayer) and name in module.lora_A:
            down[module_name] = module.lora_A[name].weight.detach().clone()
            up[module_name] = module.lora_B[name].weight.detach().clone()
            r = module.r[name]
            alpha = module.lora_alpha[name]
            if alpha != r:
                multipliers[module_name] = alpha / r
    if not down:
        raise MotionkitError(f"no motion LoRA named {name!r} is applied to this adapter")
    return MotionLoRA(down, up, multipliers)


def save_motion_lora(lora: MotionLoRA | Any, path: str | Path, name: str | None = None) -> Path:
    """Write ``lora`` (or the LoRA ``name`` applied to an adapter) as ``.safetensors`` with
    ``unet.``-prefixed diffusers PEFT keys: ``load_motion_lora`` and diffusers' ``load_lora_weights``
    (AnimateDiff pipelines) both read it."""
    from motionkit.formats.safe_load import save_safetensors

    if not isinstance(lora, MotionLoRA):
        if name is None:
            raise MotionkitError("give the name of the applied LoRA to save: save_motion_lora(adapter, path, name=...)")
        lora = lora_from_adapter(lora, name)
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise FormatError(f"{path}: motion LoRAs are written as .safetensors: give a path ending in .safetensors")
    tensors = {}
    for target in lora.targets:
        module = motionkit_to_diffusers_key(target + ".weight").removesuffix(".weight")
        # diffusers reads no alphas from plain PEFT keys (scale 1), so fold the multiplier into the up factor.
        up = lora.up[target]
        mult = lora.multipliers.get(target, 1.0)
        tensors[f"{PREFIX}{module}.lora_A.weight"] = lora.down[target]
        tensors[f"{PREFIX}{module}.lora_B.weight"] = up if mult == 1.0 else (up.float() * mult).to(up.dtype)
    save_safetensors(tensors, path, {"format": FORMAT_TAG})
    return path
