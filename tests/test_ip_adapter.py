"""IP-Adapter: h94-layout files (plain and plus, safetensors and .bin, SD and SDXL) equal diffusers'
AnimateDiff pipelines with ``load_ip_adapter``; per-frame image and scale schedules; context windows;
refusal of files that do not fit."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import AnimateDiffPipeline, AnimateDiffSDXLPipeline
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from motionkit import MotionkitError
from motionkit.errors import FormatError
from motionkit.formats.diffusers_format import to_diffusers_adapter, to_unet_motion_model
from motionkit.pipeline.ip_adapter import frame_images, frame_scales, load_ip_adapters, read_ip_adapter_file
from motionkit.pipeline.motion_pipeline import MotionPipeline
from motionkit.pipeline.schedulers import make_scheduler
from motionkit.tiny import tiny_pipeline_components

from tests.test_pipeline import SIZE, _adapter
from tests.test_pipeline_xl import _adapter as _xl_adapter

FRAMES = 8
CLIP_HIDDEN, CLIP_PROJECTION = 32, 24


def write_image_encoder(folder) -> None:
    """A tiny random CLIPVisionModelWithProjection saved as h94's image_encoder/ folder."""
    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=CLIP_HIDDEN, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        image_size=32, patch_size=8, projection_dim=CLIP_PROJECTION,
    )
    CLIPVisionModelWithProjection(config).eval().save_pretrained(folder)


def ip_adapter_weights(unet, kind: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with the original h94 key layout: ``image_proj.*`` and ``ip_adapter.{1,3,5..}.to_{k,v}_ip``."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int, std: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * std

    def norm(prefix: str, dim: int) -> dict[str, torch.Tensor]:
        return {f"{prefix}.weight": 1 + rand(dim, std=0.05), f"{prefix}.bias": rand(dim, std=0.05)}

    width = unet.config.cross_attention_dim
    tensors: dict[str, torch.Tensor] = {}
    if kind == "plain":  # ImageProjection: the pooled CLIP embedding to 4 tokens
        tensors.update({"image_proj.proj.weight": rand(4 * width, CLIP_PROJECTION), "image_proj.proj.bias": rand(4 * width)})
        tensors.update(norm("image_proj.norm", width))
    else:  # plus: the Resampler over the penultimate CLIP hidden states
        hidden, inner, queries = 32, 64, 6  # inner: one head of 64, as diffusers reads heads = to_q rows // 64
        tensors.update({
            "image_proj.latents": rand(1, queries, hidden),
            "image_proj.proj_in.weight": rand(hidden, CLIP_HIDDEN), "image_proj.proj_in.bias": rand(hidden),
            "image_proj.proj_out.weight": rand(width, hidden), "image_proj.proj_out.bias": rand(width),
        })
        tensors.update(norm("image_proj.norm_out", width))
        for layer in range(4):
            at = f"image_proj.layers.{layer}"
            tensors.update(norm(f"{at}.0.norm1", hidden))
            tensors.update(norm(f"{at}.0.norm2", hidden))
            tensors.update({
                f"{at}.0.to_q.weight": rand(inner, hidden), f"{at}.0.to_kv.weight": rand(2 * inner, hidden),
                f"{at}.0.to_out.weight": rand(hidden, inner),
                f"{at}.1.1.weight": rand(4 * hidden, hidden), f"{at}.1.3.weight": rand(hidden, 4 * hidden),
            })
            tensors.update(norm(f"{at}.1.0", hidden))
    cross = [name[: -len(".processor")] for name in unet.attn_processors if name.endswith("attn2.processor")]
    for index, name in enumerate(cross):
        attention = unet.get_submodule(name)
        key = 2 * index + 1  # h94 numbers every attention layer; the cross-attentions are the odd ones
        tensors[f"ip_adapter.{key}.to_k_ip.weight"] = rand(attention.to_k.out_features, width)
        tensors[f"ip_adapter.{key}.to_v_ip.weight"] = rand(attention.to_v.out_features, width)
    return tensors


def write_ip_adapter(folder, unet, kind: str, suffix: str, seed: int = 0):
    """``folder/models/<file>`` and ``folder/models/image_encoder/``, as the h94/IP-Adapter repository lays them out."""
    models = folder / "models"
    models.mkdir(parents=True, exist_ok=True)
    if not (models / "image_encoder").exists():
        write_image_encoder(models / "image_encoder")
    tensors = ip_adapter_weights(unet, kind, seed)
    name = f"ip-adapter{'' if kind == 'plain' else '-plus'}_{seed}{suffix}"
    if suffix == ".safetensors":
        save_file(tensors, str(models / name))
    else:  # h94's .bin files hold the two groups as nested dicts
        groups = {"image_proj": {}, "ip_adapter": {}}
        for key, value in tensors.items():
            group, _, rest = key.partition(".")
            groups[group][rest] = value
        torch.save(groups, models / name)
    return models / name


def _image(seed: int) -> PIL.Image.Image:
    return PIL.Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8))


def _pipe(components=None) -> MotionPipeline:
    components = components or tiny_pipeline_components()
    components["scheduler"] = make_scheduler("ddim", components["scheduler"].config)
    pipe = MotionPipeline.from_components(components, _adapter(components["unet"]))
    pipe.set_progress_bar_config(disable=True)
    return pipe


ARGS = dict(prompt="a cat walking", negative_prompt="blurry", num_frames=FRAMES, height=SIZE, width=SIZE,
            num_inference_steps=3, guidance_scale=7.5, output_type="latent")


def _run(pipe, seed: int = 0, **kwargs) -> torch.Tensor:
    return pipe(**{**ARGS, **kwargs}, generator=torch.Generator().manual_seed(seed)).frames


def _assert_same(actual: torch.Tensor, expected: torch.Tensor, rel: float = 5e-6) -> None:
    # fp32 rounding only: motionkit's temporal attention (on CPU a materialised-score path at these sizes)
    # rounds differently from diffusers' SDPA, and random tiny weights drive latents to ~20 over 4 steps.
    assert actual.shape == expected.shape
    assert float((actual - expected).abs().max()) <= rel * max(1.0, float(expected.abs().max()))


@pytest.mark.parametrize("kind, suffix", [("plain", ".safetensors"), ("plus", ".bin")])
def test_constant_image_equals_diffusers_load_ip_adapter(tmp_path, kind, suffix):
    pipe = _pipe()
    path = write_ip_adapter(tmp_path, pipe.unet, kind, suffix)
    fresh = tiny_pipeline_components()
    reference = AnimateDiffPipeline(
        vae=fresh["vae"], text_encoder=fresh["text_encoder"], tokenizer=fresh["tokenizer"],
        unet=to_unet_motion_model(fresh["unet"], pipe.adapter), motion_adapter=to_diffusers_adapter(pipe.adapter),
        scheduler=make_scheduler("ddim", pipe.scheduler.config),
    )
    reference.set_progress_bar_config(disable=True)
    reference.load_ip_adapter(str(tmp_path), subfolder="models", weight_name=path.name)
    # What set_ip_adapter_scale(0.7) does; on this UNetMotionModel (per-block layer counts) it fails in diffusers.
    for processor in reference.unet.attn_processors.values():
        if hasattr(processor, "to_k_ip"):
            processor.scale = [0.7]
    load_ip_adapters(pipe, path, tmp_path / "models" / "image_encoder", scales=0.7)
    image = _image(1)
    expected = reference(**ARGS, ip_adapter_image=image, generator=torch.Generator().manual_seed(0)).frames
    actual = _run(pipe, ip_adapter_image=image)
    _assert_same(actual, expected)
    # diffusers' own loader on motionkit's pipeline reads the same folder to the same result.
    again = _pipe()
    again.load_ip_adapter(str(tmp_path), subfolder="models", weight_name=path.name)
    again.set_ip_adapter_scale(0.7)
    _assert_same(_run(again, ip_adapter_image=image), expected)
    # The image really conditions the video, and a per-call scale is set_ip_adapter_scale for that call only.
    assert (_run(pipe, ip_adapter_image=_image(2)) - actual).abs().max() > 1e-4
    _assert_same(_run(pipe, ip_adapter_image=image, ip_adapter_scale=0.7), actual)
    off = _run(pipe, ip_adapter_image=image, ip_adapter_scale=0.0)
    assert (off - actual).abs().max() > 1e-4
    _assert_same(_run(pipe, ip_adapter_image=image), actual)  # the call's scale did not stick


def test_sdxl_constant_image_equals_diffusers(tmp_path):
    components = tiny_pipeline_components(family="sdxl")
    components["scheduler"] = make_scheduler("ddim", components["scheduler"].config, family="sdxl")
    pipe = MotionPipeline.from_components(components, _xl_adapter(components["unet"]))
    pipe.set_progress_bar_config(disable=True)
    path = write_ip_adapter(tmp_path, pipe.unet, "plus", ".safetensors")
    fresh = tiny_pipeline_components(family="sdxl")
    reference = AnimateDiffSDXLPipeline(
        vae=fresh["vae"], text_encoder=fresh["text_encoder"], text_encoder_2=fresh["text_encoder_2"],
        tokenizer=fresh["tokenizer"], tokenizer_2=fresh["tokenizer_2"],
        unet=to_unet_motion_model(fresh["unet"], pipe.adapter), motion_adapter=to_diffusers_adapter(pipe.adapter),
        scheduler=make_scheduler("ddim", pipe.scheduler.config, family="sdxl"),
    )
    reference.set_progress_bar_config(disable=True)
    reference.load_ip_adapter(str(tmp_path), subfolder="models", weight_name=path.name)
    load_ip_adapters(pipe, path, tmp_path / "models" / "image_encoder")
    args = {**ARGS, "num_frames": 4}
    expected = reference(**args, ip_adapter_image=_image(3), generator=torch.Generator().manual_seed(0)).frames
    _assert_same(pipe(**args, ip_adapter_image=_image(3), generator=torch.Generator().manual_seed(0)).frames, expected)


@pytest.fixture(scope="module")
def ip_pipe(tmp_path_factory) -> MotionPipeline:
    root = tmp_path_factory.mktemp("ip")
    pipe = _pipe()
    load_ip_adapters(pipe, write_ip_adapter(root, pipe.unet, "plain", ".safetensors"), root / "models" / "image_encoder")
    return pipe


def _spy(pipe) -> list[dict]:
    seen: list[dict] = []
    original = pipe.motion_unet.forward

    def spy(sample, timestep, encoder_hidden_states, added_cond_kwargs=None, cross_attention_kwargs=None, **kwargs):
        seen.append({"frames": sample.shape[2], "embeds": added_cond_kwargs["image_embeds"][0],
                     "masks": (cross_attention_kwargs or {}).get("ip_adapter_masks")})
        return original(sample, timestep, encoder_hidden_states, added_cond_kwargs=added_cond_kwargs,
                        cross_attention_kwargs=cross_attention_kwargs, **kwargs)

    pipe.motion_unet.forward = spy
    return seen


def test_image_schedule_holds_each_keyframe_image(ip_pipe):
    first, second = _image(1), _image(2)
    constant = _run(ip_pipe, ip_adapter_image=first)
    # One image keyed twice is the constant image, through the per-frame path.
    _assert_same(_run(ip_pipe, ip_adapter_image={0: first, 5: first}), constant)
    seen = _spy(ip_pipe)
    try:
        scheduled = _run(ip_pipe, ip_adapter_image={0: first, 5: second}, num_inference_steps=1)
    finally:
        del ip_pipe.motion_unet.forward
    embeds = seen[-1]["embeds"].reshape(2, FRAMES, *seen[-1]["embeds"].shape[1:])  # [negative/positive, frame, ...]
    positive = embeds[1]
    assert torch.equal(positive[0], positive[4]) and torch.equal(positive[5], positive[7])
    assert not torch.equal(positive[4], positive[5])
    assert scheduled.shape == constant.shape
    assert frame_images({2: "a", 6: "b"}, 8) == [0, 0, 0, 0, 0, 0, 1, 1]


def test_scale_schedule_runs_through_diffusers_masks(ip_pipe):
    image = _image(1)
    half = _run(ip_pipe, ip_adapter_image=image, ip_adapter_scale=0.5)
    # A flat schedule is the constant scale, through diffusers' ip_adapter_masks.
    _assert_same(_run(ip_pipe, ip_adapter_image=image, ip_adapter_scale={0: 0.5, 7: 0.5}), half, rel=1e-5)
    seen = _spy(ip_pipe)
    try:
        ramp = _run(ip_pipe, ip_adapter_image=image, ip_adapter_scale={0: 0.0, 7: 1.0}, num_inference_steps=1)
    finally:
        del ip_pipe.motion_unet.forward
    mask = seen[-1]["masks"][0]
    assert mask.shape == (2 * FRAMES, 1, SIZE // 8, SIZE // 8)
    torch.testing.assert_close(mask[FRAMES:, 0, 0, 0], torch.linspace(0, 1, FRAMES))
    assert torch.isfinite(ramp).all()
    torch.testing.assert_close(frame_scales({2: 1.0, 4: 0.0}, 6), torch.tensor([1.0, 1.0, 1.0, 0.5, 0.0, 0.0]))


def test_schedules_slice_per_context_window(ip_pipe):
    first, second = _image(1), _image(2)
    seen = _spy(ip_pipe)
    try:
        out = _run(ip_pipe, num_frames=12, context_length=6, context_overlap=2, num_inference_steps=1,
                   ip_adapter_image={0: first, 6: second}, ip_adapter_scale={0: 0.2, 11: 1.0})
    finally:
        del ip_pipe.motion_unet.forward
    assert out.shape[2] == 12 and torch.isfinite(out).all()
    assert {s["frames"] for s in seen} == {6}
    assert all(s["embeds"].shape[0] == 2 * 6 and s["masks"][0].shape[0] == 2 * 6 for s in seen)
    # The last window (frames 6..11) sees only the second image and the upper half of the ramp.
    last = seen[-1]
    assert torch.equal(last["embeds"][6], last["embeds"][11]) and last["masks"][0][6, 0, 0, 0] > 0.6


def test_bad_ip_adapter_input_is_refused(tmp_path, ip_pipe):
    plain = _pipe()
    with pytest.raises(MotionkitError, match="needs an IP-Adapter"):
        _run(plain, ip_adapter_image=_image(1), num_inference_steps=1)
    with pytest.raises(MotionkitError, match="exactly one of ip_adapter_image"):
        _run(ip_pipe, num_inference_steps=1)
    with pytest.raises(MotionkitError, match="outside the video's 8 frames"):
        _run(ip_pipe, ip_adapter_image={9: _image(1)}, num_inference_steps=1)
    xl_unet = tiny_pipeline_components(family="sdxl")["unet"]
    xl_file = write_ip_adapter(tmp_path, xl_unet, "plain", ".safetensors")
    with pytest.raises(MotionkitError, match="32-wide image tokens but the UNet's cross-attention is 16 wide"):
        load_ip_adapters(plain, xl_file, tmp_path / "models" / "image_encoder")
    other = tmp_path / "lora.safetensors"
    save_file({"unet.x.lora_A.weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(FormatError, match="not an IP-Adapter file"):
        read_ip_adapter_file(other)
    with pytest.raises(MotionkitError, match="not a CLIP image encoder folder"):
        load_ip_adapters(plain, xl_file, tmp_path)
    wrong_encoder = tmp_path / "wide"
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=16, intermediate_size=8, num_attention_heads=2, num_hidden_layers=1, image_size=16, patch_size=8,
        projection_dim=12,
    )).save_pretrained(wrong_encoder)
    sd_file = write_ip_adapter(tmp_path, plain.unet, "plain", ".safetensors", seed=1)
    with pytest.raises(MotionkitError, match="takes 24-wide image features but the image encoder gives 12"):
        load_ip_adapters(plain, sd_file, wrong_encoder)
