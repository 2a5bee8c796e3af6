"""IP-Adapter image prompts in ``MotionPipeline``: diffusers' loader and attention processors, plus schedules.

Loading is diffusers' (``IPAdapterMixin.load_ip_adapter``, which converts h94-layout weights with
``UNet2DConditionModel._load_ip_adapter_weights`` and installs ``IPAdapterAttnProcessor2_0`` in every
cross-attention of the frozen UNet). Its files are read here first with motionkit's safe loader (safetensors
with ``image_proj.*`` / ``ip_adapter.*`` keys, or a ``.bin`` holding the two dicts; SD 1.5 and SDXL, plain
``image_proj.proj`` or plus with a Resampler ``image_proj.latents`` / ``image_proj.layers...``), and the CLIP
image encoder comes from a local ``CLIPVisionModelWithProjection`` folder, so nothing is fetched.

A constant image and scale is exactly diffusers' path (``prepare_ip_adapter_image_embeds``, embeddings
repeated for every frame as ``UNetMotionModel`` does). What diffusers lacks is a schedule over frames:

- ``ip_adapter_image={frame: image, ...}``: each frame takes the image of the latest keyed frame at or
  before it (frames before the first key take the first), so a window or a stretch of frames can have its
  own reference image; the per-frame embeddings are sliced per context window.
- ``ip_adapter_scale={frame: scale, ...}``: a scale per frame, linear between keyed frames and held
  beyond them. It runs through diffusers' own ``ip_adapter_masks`` (a multiplicative weight on the
  image-attention output): a constant mask of each frame's scale, with the processor's scale at 1.0.
  A plain number is diffusers' ``set_ip_adapter_scale`` for the length of the call.

Several adapters take a list with one image (or schedule) and one scale (or schedule) each.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from motionkit.errors import FormatError, MotionkitError

IMAGE_PROJ, IP_LAYERS = "image_proj", "ip_adapter"


def _ip_processor_types() -> tuple[type, ...]:
    from diffusers.models.attention_processor import (
        IPAdapterAttnProcessor,
        IPAdapterAttnProcessor2_0,
        IPAdapterXFormersAttnProcessor,
    )

    return (IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0, IPAdapterXFormersAttnProcessor)


# -- files --------------------------------------------------------------------------------------------


def read_ip_adapter_file(path: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """An h94-layout IP-Adapter file as diffusers' ``{"image_proj": {...}, "ip_adapter": {...}}``, read safely."""
    from motionkit.formats.safe_load import read_tensor_file

    tensors, _ = read_tensor_file(path)
    if isinstance(tensors.get(IMAGE_PROJ), Mapping) and isinstance(tensors.get(IP_LAYERS), Mapping):
        state = {IMAGE_PROJ: dict(tensors[IMAGE_PROJ]), IP_LAYERS: dict(tensors[IP_LAYERS])}
    else:  # the flat safetensors layout: image_proj.proj.weight, ip_adapter.1.to_k_ip.weight, ...
        state = {IMAGE_PROJ: {}, IP_LAYERS: {}}
        for key, value in tensors.items():
            group, _, name = key.partition(".")
            if group in state and name:
                state[group][name] = value
    if not state[IMAGE_PROJ] or not state[IP_LAYERS]:
        raise FormatError(
            f"{path}: not an IP-Adapter file (no 'image_proj.*' and 'ip_adapter.*' weights): give an h94-layout "
            "file such as ip-adapter_sd15.safetensors or ip-adapter-plus_sdxl_vit-h.bin"
        )
    if not all(isinstance(v, torch.Tensor) for group in state.values() for v in group.values()):
        raise FormatError(f"{path}: IP-Adapter entries must all be tensors; the file is not an IP-Adapter checkpoint")
    return state


def _kind(state: Mapping[str, Mapping[str, torch.Tensor]]) -> str:
    proj = state[IMAGE_PROJ]
    if "proj.weight" in proj:
        return "plain"
    if "latents" in proj and "proj_in.weight" in proj:
        return "plus"
    return "other"  # full-face / FaceID layouts: diffusers converts them, motionkit checks no shapes


def check_ip_adapter_fits(state: Mapping[str, Mapping[str, torch.Tensor]], unet: Any, image_encoder: Any, where: str) -> None:
    """Refuse, in one line, an IP-Adapter made for another base width, layer count or image encoder."""
    proj, layers = state[IMAGE_PROJ], state[IP_LAYERS]
    width = unet.config.cross_attention_dim
    cross = [name for name in unet.attn_processors if name.endswith("attn2.processor")]
    kind = _kind(state)
    if kind == "plain":
        out_width, in_width, encoder_width = proj["proj.weight"].shape[0] // 4, proj["proj.weight"].shape[1], "projection_dim"
    elif kind == "plus":
        out_width, in_width, encoder_width = proj["proj_out.weight"].shape[0], proj["proj_in.weight"].shape[1], "hidden_size"
    else:
        return
    if out_width != width:
        raise MotionkitError(
            f"{where}: this IP-Adapter feeds {out_width}-wide image tokens but the UNet's cross-attention is {width} wide: "
            "use an IP-Adapter made for this base model (SD 1.5: 768, SD 2.x: 1024, SDXL: 2048)"
        )
    pairs = sum(1 for key in layers if key.endswith("to_k_ip.weight"))
    if pairs != len(cross):
        raise MotionkitError(
            f"{where}: this IP-Adapter has {pairs} cross-attention layers but the UNet {len(cross)}: "
            "use an IP-Adapter made for this base model family"
        )
    if image_encoder is not None:
        have = int(getattr(image_encoder.config, encoder_width))
        if have != in_width:
            raise MotionkitError(
                f"{where}: this {kind} IP-Adapter takes {in_width}-wide image features but the image encoder gives "
                f"{have} ({encoder_width}): use the CLIP image encoder it was trained with (SD 1.5 and plus models: ViT-H; "
                "ip-adapter_sdxl: ViT-bigG)"
            )


def load_image_encoder(folder: str | Path, device: Any = None, dtype: torch.dtype | None = None) -> Any:
    """A ``CLIPVisionModelWithProjection`` from a local folder (``config.json`` and weights), offline."""
    from transformers import CLIPVisionModelWithProjection

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise MotionkitError(
            f"{folder}: not a CLIP image encoder folder (no config.json): give the image_encoder/ folder that comes "
            "with the IP-Adapter (a transformers CLIPVisionModelWithProjection)"
        )
    try:
        encoder = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MotionkitError(f"{folder}: the CLIP image encoder does not load ({reason})") from None
    return encoder.to(device=device, dtype=dtype).eval()


def load_ip_adapters(
    pipe: Any,
    paths: str | Path | Sequence[str | Path],
    image_encoder: str | Path | Any | None = None,
    scales: float | Sequence[float] = 1.0,
) -> None:
    """Load IP-Adapter files into ``pipe`` (replacing any it holds), with ``image_encoder`` (a folder or a
    loaded ``CLIPVisionModelWithProjection``) unless the pipeline already has one."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise MotionkitError("no IP-Adapter file given")
    if image_encoder is not None and not isinstance(image_encoder, (str, Path)):
        encoder = image_encoder
    elif image_encoder is not None:
        encoder = load_image_encoder(image_encoder, pipe.unet.device, pipe.unet.dtype)
    else:
        encoder = getattr(pipe, "image_encoder", None)
    if encoder is None:
        raise MotionkitError("an IP-Adapter needs its CLIP image encoder: pass its folder (--ip-encoder DIR)")
    states = []
    for path in paths:
        state = read_ip_adapter_file(path)
        check_ip_adapter_fits(state, pipe.unet, encoder, str(path))
        states.append(state)
    pipe.register_modules(image_encoder=encoder.to(device=pipe.unet.device, dtype=pipe.unet.dtype))
    pipe.load_ip_adapter(states, subfolder=None, weight_name=None, image_encoder_folder=None)
    pipe.set_ip_adapter_scale(list(scales) if isinstance(scales, Sequence) else scales)


def ip_adapter_count(unet: Any) -> int:
    """How many IP-Adapters ``unet`` runs (0: none loaded)."""
    for processor in unet.attn_processors.values():
        if isinstance(processor, _ip_processor_types()):
            return len(processor.scale)
    return 0


# -- schedules ----------------------------------------------------------------------------------------


def _keyed(schedule: Mapping[Any, Any], num_frames: int, what: str) -> list[tuple[int, Any]]:
    if not schedule:
        raise MotionkitError(f"{what} schedule is empty: key at least one frame, e.g. {{0: ...}}")
    keys = []
    for frame, value in schedule.items():
        if isinstance(frame, bool) or not isinstance(frame, int):
            raise MotionkitError(f"{what} schedule keys are frame indices, got {frame!r}")
        index = frame + num_frames if frame < 0 else frame
        if not 0 <= index < num_frames:
            raise MotionkitError(f"{what} schedule frame {frame} is outside the video's {num_frames} frames")
        keys.append((index, value))
    return sorted(keys, key=lambda item: item[0])


def frame_images(schedule: Mapping[int, Any], num_frames: int) -> list[int]:
    """For every frame, the position (in key order) of the keyed image it takes: the latest key at or before it."""
    keys = [frame for frame, _ in _keyed(schedule, num_frames, "ip_adapter_image")]
    held, position = [], 0
    for frame in range(num_frames):
        while position + 1 < len(keys) and keys[position + 1] <= frame:
            position += 1
        held.append(position)
    return held


def frame_scales(schedule: Mapping[int, float], num_frames: int) -> torch.Tensor:
    """``[F]`` scales: linear between keyed frames, held before the first and after the last."""
    keys = _keyed(schedule, num_frames, "ip_adapter_scale")
    frames = torch.tensor([float(k) for k, _ in keys])
    values = torch.tensor([float(v) for _, v in keys])
    positions = torch.arange(num_frames, dtype=torch.float32)
    if len(keys) == 1:
        return values.expand(num_frames).clone()
    right = torch.searchsorted(frames, positions, right=True).clamp(1, len(keys) - 1)
    left = right - 1
    weight = ((positions - frames[left]) / (frames[right] - frames[left])).clamp(0.0, 1.0)
    return values[left] + weight * (values[right] - values[left])


# -- one call -----------------------------------------------------------------------------------------


@dataclass
class IPConditioning:
    """A call's image prompts, batched like the latents (negative half first under guidance)."""

    embeds: list[torch.Tensor]  # per adapter: [N, images, ...] for every frame, or [N, F, images, ...] per frame
    per_frame: list[bool]
    scales: list[float | torch.Tensor | None]  # per adapter: None (keep), a number, or [F] per frame
    latent_size: tuple[int, int]

    def unet_kwargs(
        self, frames: list[int], added: dict[str, Any] | None, cross: dict[str, Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The UNet's ``added_cond_kwargs`` and ``cross_attention_kwargs`` for a window of ``frames``."""
        index = torch.tensor(frames)
        embeds = []
        for embed, per_frame in zip(self.embeds, self.per_frame):
            if per_frame:  # [N, F, ...] -> this window's frames, flattened video-major as MotionUNet does
                picked = embed[:, index.to(embed.device)]
                embed = picked.reshape(-1, *picked.shape[2:])
            embeds.append(embed)
        added = {**(added or {}), "image_embeds": embeds}
        if not any(isinstance(s, torch.Tensor) for s in self.scales):
            return added, cross
        masks = []
        videos = self.embeds[0].shape[0]  # the batch of videos (both guidance halves)
        for scale, embed in zip(self.scales, embeds):
            if not isinstance(scale, torch.Tensor):
                masks.append(None)
                continue
            # One weight per (video, frame), video-major as the UNet batch; [N*Fw, images, h, w] as diffusers' masks.
            weight = scale.to(embed.device)[index.to(embed.device)].repeat(videos)
            masks.append(weight.view(-1, 1, 1, 1).expand(-1, embed.shape[1], *self.latent_size).to(embed.dtype))
        return added, {**(cross or {}), "ip_adapter_masks": masks}

    @contextlib.contextmanager
    def processor_scales(self, unet: Any) -> Iterator[None]:
        """Set the processors' scales for this call (1.0 where a per-frame schedule's masks carry them)."""
        processors = [p for p in unet.attn_processors.values() if isinstance(p, _ip_processor_types())]
        saved = [list(p.scale) for p in processors]
        for processor in processors:
            for i, scale in enumerate(self.scales):
                if scale is not None:
                    processor.scale[i] = 1.0 if isinstance(scale, torch.Tensor) else float(scale)
        try:
            yield
        finally:
            for processor, scale in zip(processors, saved):
                processor.scale = scale


def _per_adapter(value: Any, count: int, name: str) -> list[Any]:
    if count == 1 and not (isinstance(value, list) and len(value) == 1 and isinstance(value[0], (Mapping, list))):
        return [value]
    if not isinstance(value, (list, tuple)) or len(value) != count:
        raise MotionkitError(f"{name} needs one entry per IP-Adapter ({count} loaded), got {value!r:.80}")
    return list(value)


def prepare_ip_adapter(
    pipe: Any,
    image: Any,
    image_embeds: list[torch.Tensor] | None,
    scale: Any,
    num_frames: int,
    batch: int,
    do_cfg: bool,
    device: torch.device,
    latent_size: tuple[int, int],
) -> IPConditioning | None:
    """The call's IP-Adapter conditioning; ``None`` when the pipeline holds none and none is asked for."""
    count = ip_adapter_count(pipe.unet)
    if count == 0:
        if image is not None or image_embeds is not None or scale is not None:
            raise MotionkitError("ip_adapter_image needs an IP-Adapter: load one first (pipe.load_ip_adapter / --ip-adapter)")
        return None
    if (image is None) == (image_embeds is None):
        raise MotionkitError(
            "this pipeline holds an IP-Adapter: give exactly one of ip_adapter_image and ip_adapter_image_embeds "
            "(or pipe.unload_ip_adapter())"
        )
    scales: list[Any] = [None] * count
    if scale is not None:
        scales = [
            frame_scales(s, num_frames) if isinstance(s, Mapping) else (None if s is None else float(s))
            for s in _per_adapter(scale, count, "ip_adapter_scale")
        ]
    if image_embeds is not None:
        embeds = pipe.prepare_ip_adapter_image_embeds(None, image_embeds, device, batch, do_cfg)
        return IPConditioning(embeds, [False] * count, scales, latent_size)
    images = _per_adapter(image, count, "ip_adapter_image")
    if not any(isinstance(i, Mapping) for i in images):  # diffusers' path, exactly
        embeds = pipe.prepare_ip_adapter_image_embeds(images, None, device, batch, do_cfg)
        return IPConditioning(embeds, [False] * count, scales, latent_size)
    cache: dict[Any, list[torch.Tensor]] = {}

    def encoded(picture: Any) -> list[torch.Tensor]:
        """Every adapter's embeddings of one image (diffusers encodes per adapter)."""
        key = str(picture) if isinstance(picture, (str, Path)) else id(picture)
        if key not in cache:
            from motionkit.pipeline.image_input import load_image

            loaded = load_image(picture) if isinstance(picture, (str, Path)) else picture
            cache[key] = pipe.prepare_ip_adapter_image_embeds([loaded] * count, None, device, batch, do_cfg)
        return cache[key]

    embeds, per_frame = [], []
    for adapter, entry in enumerate(images):
        if not isinstance(entry, Mapping):
            embeds.append(encoded(entry)[adapter])
            per_frame.append(False)
            continue
        keyed = [picture for _, picture in _keyed(entry, num_frames, "ip_adapter_image")]
        keyed_embeds = torch.stack([encoded(picture)[adapter] for picture in keyed], dim=1)  # [N, K, images, ...]
        held = torch.tensor(frame_images(entry, num_frames), device=keyed_embeds.device)
        embeds.append(keyed_embeds[:, held])
        per_frame.append(True)
    return IPConditioning(embeds, per_frame, scales, latent_size)
