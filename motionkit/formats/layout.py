"""Adapter layout from state-dict keys and shapes, and AnimateDiff version naming.

Works on motionkit's internal keys (the original AnimateDiff names). Everything structural is read
from the weights; what weights cannot tell (attention heads, norm groups) is left to the caller.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Mapping

from motionkit.errors import FormatError

_BLOCK = re.compile(r"^(down_blocks|up_blocks)\.(\d+)\.motion_modules\.(\d+)\.(.+)$")
_MID = re.compile(r"^mid_block\.motion_modules\.(\d+)\.(.+)$")


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(value.shape) if hasattr(value, "shape") else tuple(value)


def _module_info(rest: dict[str, tuple[int, ...]], where: str) -> dict[str, Any]:
    """Channels and structure of one motion module from its keys (relative to the module)."""
    info: dict[str, Any] = {"attention": False, "conv": False}
    if "temporal_transformer.proj_in.weight" in rest:
        info["attention"] = True
        info["channels"] = rest["temporal_transformer.proj_in.weight"][0]
        layers = {int(m.group(1)) for k in rest if (m := re.match(r"temporal_transformer\.transformer_blocks\.(\d+)\.", k))}
        attns = {
            int(m.group(1))
            for k in rest
            if (m := re.match(r"temporal_transformer\.transformer_blocks\.0\.attention_blocks\.(\d+)\.", k))
        }
        info["transformer_layers"] = max(layers) + 1 if layers else 0
        info["attentions"] = max(attns) + 1 if attns else 0
    if "temporal_conv.conv1.weight" in rest:
        shape = rest["temporal_conv.conv1.weight"]
        info["conv"] = True
        info.setdefault("channels", shape[0])
        info["kernel"] = shape[2] if len(shape) > 2 else 1
    if "channels" not in info:
        raise FormatError(f"motion module {where} has neither temporal_transformer.proj_in nor temporal_conv.conv1 weights")
    return info


def infer_layout(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """``MotionAdapter`` config fields implied by the keys and shapes of an internal-layout state dict."""
    shapes = {k: _shape(v) for k, v in state_dict.items()}
    modules: dict[tuple[str, int], dict[int, dict[str, tuple[int, ...]]]] = defaultdict(lambda: defaultdict(dict))
    for key, shape in shapes.items():
        if m := _BLOCK.match(key):
            modules[(m.group(1), int(m.group(2)))][int(m.group(3))][m.group(4)] = shape
        elif m := _MID.match(key):
            modules[("mid_block", 0)][int(m.group(1))][m.group(2)] = shape
    down = sorted(i for kind, i in modules if kind == "down_blocks")
    if not down:
        raise FormatError("no down_blocks.N.motion_modules.M weights found")
    if down != list(range(len(down))):
        raise FormatError(f"down blocks {down} are not numbered 0..{len(down) - 1}")
    infos: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for (kind, i), mods in modules.items():
        if sorted(mods) != list(range(len(mods))):
            raise FormatError(f"{kind}.{i} motion modules {sorted(mods)} are not numbered 0..{len(mods) - 1}")
        infos[(kind, i)] = [_module_info(mods[j], f"{kind}.{i}.motion_modules.{j}") for j in range(len(mods))]

    n = len(down)
    channels, layers = [], []
    for i in range(n):
        block = infos[("down_blocks", i)]
        channels.append(block[0]["channels"])
        layers.append(len(block))
    for i in range(n):
        up = infos.get(("up_blocks", i))
        want_c, want_k = channels[n - 1 - i], layers[n - 1 - i] + 1
        if up is None or len(up) != want_k or up[0]["channels"] != want_c:
            got = "missing" if up is None else f"{len(up)} modules of {up[0]['channels']} channels"
            raise FormatError(
                f"up_blocks.{i} ({got}) does not mirror the down blocks ({want_k} modules of {want_c} channels expected)"
            )
    extra_up = sorted(i for kind, i in infos if kind == "up_blocks" and i >= n)
    if extra_up:
        raise FormatError(f"{len(extra_up) + n} up blocks but only {n} down blocks")
    mid = infos.get(("mid_block", 0), [])

    every = [m for block in infos.values() for m in block]
    signature = {(m["attention"], m["conv"], m.get("transformer_layers"), m.get("attentions"), m.get("kernel")) for m in every}
    if len(signature) != 1:
        raise FormatError("motion modules differ in structure (attention/convolution/depth); motionkit needs them uniform")
    attention, conv, t_layers, attentions, kernel = signature.pop()
    for block_key, block in infos.items():
        if len({m["channels"] for m in block}) != 1:
            raise FormatError(f"{block_key[0]}.{block_key[1]} mixes channel counts across its motion modules")
    if mid and mid[0]["channels"] != channels[-1]:
        raise FormatError(f"mid_block has {mid[0]['channels']} channels, the last down block {channels[-1]}")

    config: dict[str, Any] = {
        "block_out_channels": tuple(channels),
        "layers_per_block": layers[0] if len(set(layers)) == 1 else tuple(layers),
        "use_mid_block": bool(mid),
        "mid_block_layers": len(mid) if mid else 1,
        "use_temporal_attention": attention,
        "use_temporal_conv": conv,
    }
    if attention:
        config["transformer_layers_per_block"] = t_layers
        config["attentions_per_block"] = attentions
    if conv:
        config["temporal_conv_kernel_size"] = kernel
    cond = shapes.get("image_cond_conv.weight")
    config["image_cond_channels"] = cond[1] if cond else 0
    return config


# PIA's conv_in: the latent's four channels, then the image condition (mask + masked-image latent).
LATENT_CHANNELS = 4


def pia_image_cond_weight(conv_in: Any) -> Any:
    """The image-conditioning weight held in a PIA ``conv_in`` (channels 4+).

    Channels 0-3 and the bias are the image UNet's own: diffusers' ``UNetMotionModel`` replaces them with
    the base UNet's, so a PIA branch adds only what channels 4+ compute (and so does motionkit).
    """
    shape = _shape(conv_in)
    if len(shape) != 4 or shape[1] <= LATENT_CHANNELS:
        raise FormatError(
            f"conv_in.weight has shape {shape}; an image-conditioned (PIA) adapter needs more "
            f"than {LATENT_CHANNELS} input channels"
        )
    return conv_in[:, LATENT_CHANNELS:].contiguous()


def pia_note(conv_in: Any) -> str:
    channels = _shape(conv_in)[1]
    return (
        f"PIA conv_in with {channels} input channels: channels {LATENT_CHANNELS}-{channels - 1} are the image condition; "
        f"channels 0-{LATENT_CHANNELS - 1} and the bias come from the base UNet"
    )


def largest_divisor(wanted: int, channels: tuple[int, ...]) -> int:
    """The largest value not above ``wanted`` that divides every block's channels."""
    return next(v for v in range(wanted, 0, -1) if all(c % v == 0 for c in channels))


def animatediff_version(config: Mapping[str, Any], table_length: int | None) -> str:
    """Name the release from the structure first, then the table: three blocks (SDXL's layout) are Hotshot-XL
    with its 24-frame table, else the SDXL beta; four blocks with a mid block are v2 whatever the table; without
    one, a 24-frame table is v1 and anything else v3."""
    if len(config["block_out_channels"]) == 3:
        return "hotshot-xl" if table_length == 24 else "sdxl-beta"
    if config.get("use_mid_block"):
        return "v2"
    if table_length == 24:
        return "v1"
    return "v3"


# Fields weights cannot tell, with the value the released checkpoints use.
_DEFAULT_HEADS = 8
_DEFAULT_GROUPS = 32


class Converted:
    """A checkpoint turned into motionkit's internal layout, before the adapter is built."""

    def __init__(
        self,
        state_dict: dict[str, Any],
        config: dict[str, Any],
        format: str,
        version: str | None = None,
        notes: list[str] | None = None,
    ):
        self.state_dict = state_dict
        self.config = config
        self.format = format
        self.version = version
        self.notes = notes or []


def complete_config(inferred: Mapping[str, Any], hints: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` < ``hints`` (what the file's own config says) < ``inferred`` (what the weights show).

    Heads and norm groups fall back to AnimateDiff's 8 and 32, lowered to a divisor of every block's
    channels so non-standard sizes still build (override them when the training run used others).
    """
    config: dict[str, Any] = {**defaults, **{k: v for k, v in hints.items() if v is not None}, **inferred}
    channels = tuple(config["block_out_channels"])
    if "num_attention_heads" not in config:
        config["num_attention_heads"] = largest_divisor(_DEFAULT_HEADS, channels)
    if "norm_num_groups" not in config:
        config["norm_num_groups"] = largest_divisor(_DEFAULT_GROUPS, channels)
    for key in ("block_out_channels", "layers_per_block", "num_attention_heads"):
        if isinstance(config.get(key), list):
            config[key] = tuple(config[key])
    return config
