"""Base model loading: diffusers folders and original-layout single files, offline; families; shipped
configs; image LoRAs; adapter/base family checks."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from motionkit.adapter import MotionAdapter
from motionkit.errors import FormatError, LayoutMismatchError, MotionkitError
from motionkit.injection import unet_layout
from motionkit.pipeline.loading import (
    CONFIGS_DIR,
    FAMILIES,
    config_dir,
    detect_family,
    base_family,
    load_adapter_for,
    load_base,
)
from motionkit.tiny import tiny_pipeline_components


# --------------------------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models on a shared CPU: thread hand-offs cost far more than the arithmetic.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def no_hub(monkeypatch):
    """Any attempt to reach the hub (or any network) fails the test."""
    import diffusers.utils.hub_utils
    import huggingface_hub
    import huggingface_hub.file_download
    import transformers.utils.hub

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    for module in (huggingface_hub, huggingface_hub.file_download, diffusers.utils.hub_utils, transformers.utils.hub):
        for name in ("hf_hub_download", "snapshot_download", "get_hf_file_metadata", "model_info"):
            monkeypatch.setattr(module, name, refuse, raising=False)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}


def _unet_to_ldm(unet) -> dict[str, torch.Tensor]:
    """Rename a diffusers UNet's weights to the original LDM (``model.diffusion_model.*``) layout."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = {**DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"], **DIFFUSERS_TO_LDM_MAPPING["unet"]["addition_embed_type"]}
    step = unet.config.layers_per_block + 1
    out = {}
    for key, value in unet.state_dict().items():
        if key in fixed:
            new = fixed[key]
        elif m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            new = f"input_blocks.{b * step + j + 1}.{0 if kind == 'resnets' else 1}.{rest}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            new = f"input_blocks.{(int(m[1]) + 1) * step}.0.op.{m[2]}"
        elif m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key):
            new = f"middle_block.{2 * int(m[2]) if m[1] == 'resnets' else 1}.{m[3]}"
        elif m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            new = f"output_blocks.{b * step + j}.{0 if kind == 'resnets' else 1}.{rest}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            b = int(m[1])
            has_attention = hasattr(unet.up_blocks[b], "attentions")
            new = f"output_blocks.{b * step + step - 1}.{2 if has_attention else 1}.conv.{m[2]}"
        else:
            raise AssertionError(f"no LDM name for {key}")
        if ".resnets." in key:
            for diffusers_name, ldm_name in _RESNET.items():
                new = new.replace(f".{diffusers_name}.", f".{ldm_name}.")
        out["model.diffusion_model." + new] = value
    return out


def _vae_to_ldm(vae) -> dict[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = DIFFUSERS_TO_LDM_MAPPING["vae"]
    n = len(vae.config.up_block_types)
    attention = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out = {}
    for key, value in vae.state_dict().items():
        if key in fixed:
            new = fixed[key]
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"decoder.up.{n - 1 - int(m[1])}.block.{m[2]}.{m[3]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            new = f"decoder.up.{n - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)", key):
            new = f"{m[1]}.mid.attn_1.{attention[m[2]]}.{m[3]}"
            if value.ndim == 2:
                value = value[:, :, None, None]  # the original VAE's attention projections are 1x1 convs
        else:
            raise AssertionError(f"no LDM name for {key}")
        out["first_stage_model." + new.replace("conv_shortcut", "nin_shortcut")] = value
    return out


def _text_encoder_to_ldm(text_encoder) -> dict[str, torch.Tensor]:
    # The original layout saved transformers' CLIPTextModel as it was then, with a ``text_model.`` level.
    return {
        "cond_stage_model.transformer.text_model." + k.removeprefix("text_model."): v
        for k, v in text_encoder.state_dict().items()
    }


def _open_clip_to_ldm(text_encoder, prefix: str) -> dict[str, torch.Tensor]:
    """Rename a CLIPTextModelWithProjection's weights to OpenCLIP's layout (fused q/k/v, ``resblocks``)."""
    state = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    renames = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj", "self_attn.out_proj": "attn.out_proj"}
    out = {
        "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
        "positional_embedding": state.pop("embeddings.position_embedding.weight"),
        "ln_final.weight": state.pop("final_layer_norm.weight"),
        "ln_final.bias": state.pop("final_layer_norm.bias"),
        "text_projection": state.pop("text_projection.weight").T,
    }
    for i in range(text_encoder.config.num_hidden_layers):
        layer = f"encoder.layers.{i}."
        for kind in ("weight", "bias"):
            qkv = [state.pop(f"{layer}self_attn.{p}_proj.{kind}") for p in "qkv"]
            out[f"transformer.resblocks.{i}.attn.in_proj_{kind}"] = torch.cat(qkv)
        for key in [k for k in state if k.startswith(layer)]:
            name = key[len(layer):]
            for old, new in renames.items():
                name = name.replace(old, new)
            out[f"transformer.resblocks.{i}.{name}"] = state.pop(key)
    state.pop("embeddings.position_ids", None)
    assert not state, sorted(state)
    return {prefix + k: v for k, v in out.items()}


def write_ldm_checkpoint(components: dict, path: Path) -> Path:
    """One original-layout single file (UNet + VAE + text encoder) from tiny diffusers components."""
    state = {**_unet_to_ldm(components["unet"]), **_vae_to_ldm(components["vae"]), **_text_encoder_to_ldm(components["text_encoder"])}
    state = {k: v.contiguous().clone() for k, v in state.items()}
    if path.suffix == ".ckpt":
        torch.save({"state_dict": state, "global_step": 1}, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    return path


def write_config_folder(components: dict, folder: Path, with_tokenizer: bool = True) -> Path:
    """A diffusers-format config folder (no weights) describing ``components``."""
    index = {"_class_name": "StableDiffusionPipeline"}
    for name in ("unet", "vae", "scheduler"):
        components[name].save_config(folder / name)
        index[name] = ["diffusers", type(components[name]).__name__]
    components["text_encoder"].config.save_pretrained(folder / "text_encoder")
    index["text_encoder"] = ["transformers", type(components["text_encoder"]).__name__]
    index["tokenizer"] = ["transformers", "CLIPTokenizer"]
    if with_tokenizer:
        components["tokenizer"].save_pretrained(folder / "tokenizer")
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def save_pipeline_folder(components: dict, folder: Path) -> Path:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key].to(sa[key].dtype)), key


@pytest.fixture(scope="module")
def tiny():
    return tiny_pipeline_components(seed=0)


# --------------------------------------------------------------------------------------------- loading


def test_diffusers_folder_loads(tiny, tmp_path):
    folder = save_pipeline_folder(tiny, tmp_path / "base")
    loaded = load_base(folder)
    assert {"vae", "text_encoder", "tokenizer", "unet", "scheduler"} <= set(loaded)
    for name in ("unet", "vae", "text_encoder"):
        assert_same_weights(tiny[name], loaded[name])
    assert loaded["tokenizer"]("a cat").input_ids == tiny["tokenizer"]("a cat").input_ids


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_single_file_loads_offline_with_config(tiny, tmp_path, suffix):
    ckpt = write_ldm_checkpoint(tiny, tmp_path / f"model{suffix}")
    config = write_config_folder(tiny, tmp_path / "config")
    loaded = load_base(ckpt, config=config)
    for name in ("unet", "vae", "text_encoder"):
        assert_same_weights(tiny[name], loaded[name])
    assert loaded["scheduler"].config.beta_schedule == tiny["scheduler"].config.beta_schedule
    # The loaded VAE decodes like the original (attention 1x1 convs were turned back into linears).
    z = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(tiny["vae"].decode(z).sample, loaded["vae"].decode(z).sample)


def test_single_file_tokenizer_search(tiny, tmp_path):
    (tmp_path / "models").mkdir()
    ckpt = write_ldm_checkpoint(tiny, tmp_path / "models" / "model.safetensors")
    config = write_config_folder(tiny, tmp_path / "config", with_tokenizer=False)
    with pytest.raises(MotionkitError, match="--tokenizer DIR"):
        load_base(ckpt, config=config)
    # --tokenizer: a tokenizer folder, or a pipeline folder holding tokenizer/
    tiny["tokenizer"].save_pretrained(tmp_path / "tok")
    assert load_base(ckpt, config=config, tokenizer=tmp_path / "tok")["tokenizer"] is not None
    with pytest.raises(FileNotFoundError):
        load_base(ckpt, config=config, tokenizer=tmp_path / "nope")
    # tokenizer/ beside the checkpoint
    tiny["tokenizer"].save_pretrained(tmp_path / "models" / "tokenizer")
    assert load_base(ckpt, config=config)["tokenizer"]("a").input_ids == tiny["tokenizer"]("a").input_ids


def test_single_file_tokenizer_from_local_hf_cache(tiny, tmp_path, monkeypatch):
    import huggingface_hub.constants

    ckpt = write_ldm_checkpoint(tiny, tmp_path / "model.safetensors")
    config = write_config_folder(tiny, tmp_path / "config", with_tokenizer=False)
    index = json.loads((config / "model_index.json").read_text())
    index["_motionkit_tokenizers"] = {"tokenizer": {"repo": "openai/clip-vit-large-patch14"}}
    (config / "model_index.json").write_text(json.dumps(index))
    cache = tmp_path / "hub"
    snapshot = cache / "models--openai--clip-vit-large-patch14" / "snapshots" / ("0" * 40)
    tiny["tokenizer"].save_pretrained(snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert load_base(ckpt, config=config)["tokenizer"]("a").input_ids == tiny["tokenizer"]("a").input_ids


def test_single_file_errors(tiny, tmp_path):
    config = write_config_folder(tiny, tmp_path / "config")
    with pytest.raises(FileNotFoundError):
        load_base(tmp_path / "missing.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="model_index.json"):
        load_base(tmp_path / "empty")
    from safetensors.torch import save_file

    save_file({"foo.weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(FormatError, match="original layout"):
        load_base(tmp_path / "other.safetensors")
    # A file missing part of the UNet fails in one line, naming what is missing.
    state = _unet_to_ldm(tiny["unet"])
    state.pop(next(iter(state)))
    save_file({**state, **_vae_to_ldm(tiny["vae"]), **_text_encoder_to_ldm(tiny["text_encoder"])}, str(tmp_path / "cut.safetensors"))
    with pytest.raises(FormatError, match="lacks 1 weights") as err:
        load_base(tmp_path / "cut.safetensors", config=config)
    assert "\n" not in str(err.value)


def test_ckpt_refuses_pickled_code(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"state_dict": Evil()}, protocol=2))
    with pytest.raises(FormatError):
        load_base(path)


# --------------------------------------------------------------------------------------------- families


def _keys(*pairs):
    return {key: torch.empty(shape, device="meta") for key, shape in pairs}


SD15_KEYS = _keys(
    ("model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight", (320, 768)),
    ("model.diffusion_model.output_blocks.11.0.skip_connection.weight", (320, 640, 1, 1)),
    ("cond_stage_model.transformer.text_model.embeddings.position_embedding.weight", (77, 768)),
)
SD2_KEYS = _keys(
    ("model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight", (320, 1024)),
    ("model.diffusion_model.output_blocks.11.0.skip_connection.weight", (320, 640, 1, 1)),
    ("cond_stage_model.model.token_embedding.weight", (49408, 1024)),
)
SDXL_KEYS = _keys(
    ("model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight", (640, 2048)),
    ("conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias", (1280,)),
    ("conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight", (77, 768)),
)


def test_detect_family():
    assert detect_family(SD15_KEYS) == "sd15"
    assert detect_family(SDXL_KEYS) == "sdxl"
    # SD 2: 768 v-prediction unless the file says epsilon (metadata, or the SD 2 base release step).
    assert detect_family(SD2_KEYS) == "sd2-v"
    assert detect_family(SD2_KEYS, {"modelspec.prediction_type": "epsilon"}) == "sd2"
    assert detect_family({**SD2_KEYS, "global_step": torch.tensor(875000)}) == "sd2"
    assert detect_family(SD2_KEYS, {"ss_v_parameterization": "true"}) == "sd2-v"


def test_detect_family_refusals():
    inpaint = {**SD15_KEYS, **_keys(("model.diffusion_model.input_blocks.0.0.weight", (320, 9, 3, 3)))}
    with pytest.raises(FormatError, match="inpainting"):
        detect_family(inpaint)
    motion = _keys(("down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe", (1, 24, 320)))
    with pytest.raises(FormatError, match="motion module"):
        detect_family(motion)
    with pytest.raises(FormatError, match="original layout"):
        detect_family(_keys(("conv_in.weight", (320, 4, 3, 3))))


# --------------------------------------------------------------------------------------------- shipped configs


def _meta_unet(family: str):
    from diffusers import UNet2DConditionModel

    config = UNet2DConditionModel.load_config(str(config_dir(family)), subfolder="unet")
    with torch.device("meta"):
        return UNet2DConditionModel.from_config(config)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_shipped_configs_parse(family):
    from transformers import CLIPTextConfig

    folder = config_dir(family)
    index = json.loads((folder / "model_index.json").read_text())
    unet = _meta_unet(family)
    assert unet.config.in_channels == 4
    for name in ("text_encoder", "text_encoder_2"):
        if name in index:
            assert CLIPTextConfig.from_pretrained(str(folder / name), local_files_only=True).vocab_size == 49408
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == ("v_prediction" if family == "sd2-v" else "epsilon")


@pytest.mark.parametrize("family, preset", [("sd15", "animatediff-v2"), ("sd2", "animatediff-v3"), ("sdxl", "animatediff-sdxl-beta")])
def test_shipped_unet_layouts_fit_presets(family, preset):
    from motionkit.injection import check_fits

    unet = _meta_unet(family)
    with torch.device("meta"):
        adapter = MotionAdapter.from_preset(preset)
    layout, wanted = unet_layout(unet), adapter.layout()
    assert layout.block_out_channels == wanted.block_out_channels
    assert layout.layers_per_block == wanted.layers_per_block
    check_fits(unet, adapter)


def test_shipped_configs_are_small_text():
    files = [p for p in CONFIGS_DIR.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert path.suffix in (".json", ".md"), path
        assert path.stat().st_size < 16_000, path
        path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------- adapter fit


def test_load_adapter_for_refuses_other_family(tiny, tmp_path):
    from motionkit.tiny import tiny_unet

    MotionAdapter.from_unet(tiny["unet"]).save_pretrained(tmp_path / "sd")
    MotionAdapter.from_unet(tiny_unet("tiny-sdxl")).save_pretrained(tmp_path / "xl")
    assert load_adapter_for(tiny, tmp_path / "sd").layout() == unet_layout(tiny["unet"])
    with pytest.raises(LayoutMismatchError, match="does not fit") as err:
        load_adapter_for(tiny, tmp_path / "xl")
    assert "\n" not in str(err.value)


def test_single_file_without_config_uses_shipped_sd15(tiny, tmp_path):
    # The tiny file reads as SD 1.x and is checked against the shipped SD 1.5 config, offline.
    ckpt = write_ldm_checkpoint(tiny, tmp_path / "model.safetensors")
    with pytest.raises(FormatError, match="--base-config") as err:
        load_base(ckpt)
    assert "\n" not in str(err.value)


def test_single_file_samples_through_motion_pipeline(tiny, tmp_path):
    from motionkit.pipeline.motion_pipeline import MotionPipeline

    ckpt = write_ldm_checkpoint(tiny, tmp_path / "model.safetensors")
    config = write_config_folder(tiny, tmp_path / "config")
    MotionAdapter.from_unet(tiny["unet"]).save_pretrained(tmp_path / "adapter")
    pipe = MotionPipeline.from_single_file(ckpt, adapter=tmp_path / "adapter", config=config)
    pipe.set_progress_bar_config(disable=True)
    frames = pipe("a cat", num_frames=3, height=64, width=64, num_inference_steps=2, output_type="np").frames
    assert frames.shape == (1, 3, 64, 64, 3) and np.isfinite(frames).all()


# --------------------------------------------------------------------------------------------- image LoRAs


def write_lora(path: Path, unet_width: int = 32, text_width: int = 16, seed: int = 0, text: bool = True) -> Path:
    """A rank-2 image LoRA in diffusers/peft layout on one UNet attention and one text-encoder projection."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    target = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    tensors = {
        f"{target}.lora_A.weight": torch.randn(2, unet_width, generator=g),
        f"{target}.lora_B.weight": torch.randn(unet_width, 2, generator=g),
    }
    if text:
        te = "text_encoder.text_model.encoder.layers.0.self_attn.q_proj"
        tensors[f"{te}.lora_A.weight"] = torch.randn(2, text_width, generator=g)
        tensors[f"{te}.lora_B.weight"] = torch.randn(text_width, 2, generator=g)
    save_file(tensors, str(path))
    return path


def _sample(components: dict, adapter: MotionAdapter) -> np.ndarray:
    from motionkit.pipeline.motion_pipeline import MotionPipeline

    pipe = MotionPipeline(**{k: components[k] for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}, adapter=adapter)
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a cat", num_frames=2, height=64, width=64, num_inference_steps=1,
               generator=torch.Generator().manual_seed(0), output_type="np").frames
    pipe.eject()
    return out


def test_lora_changes_output_and_scale_zero_does_not(tmp_path):
    from motionkit.pipeline.lora import apply_loras

    lora = write_lora(tmp_path / "style.safetensors")
    reference = tiny_pipeline_components(seed=0)
    adapter = MotionAdapter.from_unet(reference["unet"])
    baseline = _sample(reference, adapter)

    zero = tiny_pipeline_components(seed=0)
    assert apply_loras(zero, [(lora, 0.0)]) == ["lora0_style"]
    np.testing.assert_allclose(_sample(zero, adapter), baseline, atol=1e-6)

    full = tiny_pipeline_components(seed=0)
    apply_loras(full, [(lora, 1.0)])
    assert "lora0_style" in full["text_encoder"].peft_config
    assert np.abs(_sample(full, adapter) - baseline).max() > 1e-3


def test_several_loras_at_once(tmp_path):
    from motionkit.pipeline.lora import apply_loras

    a = write_lora(tmp_path / "a.safetensors", seed=1)
    b = write_lora(tmp_path / "b.safetensors", seed=2, text=False)
    components = tiny_pipeline_components(seed=0)
    names = apply_loras(components, [(a, 0.7), (b, 0.3)])
    assert names == ["lora0_a", "lora1_b"]
    assert components["unet"].active_adapters() == names
    assert list(components["text_encoder"].peft_config) == ["lora0_a"]  # b has no text-encoder part


def test_lora_errors(tmp_path):
    from safetensors.torch import save_file

    from motionkit.pipeline.lora import apply_loras, parse_lora_spec

    assert parse_lora_spec("style.safetensors") == ("style.safetensors", 1.0)
    assert parse_lora_spec("dir/style.safetensors:0.75") == ("dir/style.safetensors", 0.75)
    assert parse_lora_spec("style.safetensors:-1e-1") == ("style.safetensors", -0.1)
    for bad in ("", "style.safetensors:strong"):
        with pytest.raises(MotionkitError):
            parse_lora_spec(bad)
    components = tiny_pipeline_components(seed=0)
    with pytest.raises(FileNotFoundError):
        apply_loras(components, [(tmp_path / "missing.safetensors", 1.0)])
    save_file({"foo.weight": torch.zeros(2, 2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(FormatError, match="not an image LoRA"):
        apply_loras(components, [(tmp_path / "plain.safetensors", 1.0)])


def test_sdxl_single_file_loads_with_config(tmp_path):
    sdxl = tiny_pipeline_components(seed=0, family="sdxl")
    state = {
        **_unet_to_ldm(sdxl["unet"]),
        **_vae_to_ldm(sdxl["vae"]),
        **{k.replace("cond_stage_model.", "conditioner.embedders.0."): v for k, v in _text_encoder_to_ldm(sdxl["text_encoder"]).items()},
        **_open_clip_to_ldm(sdxl["text_encoder_2"], "conditioner.embedders.1.model."),
    }
    from safetensors.torch import save_file

    save_file({k: v.contiguous().clone() for k, v in state.items()}, str(tmp_path / "xl.safetensors"))
    config = write_config_folder(sdxl, tmp_path / "config")
    sdxl["text_encoder_2"].config.save_pretrained(config / "text_encoder_2")
    index = json.loads((config / "model_index.json").read_text())
    index.update(text_encoder_2=["transformers", "CLIPTextModelWithProjection"], tokenizer_2=["transformers", "CLIPTokenizer"])
    index["_motionkit_tokenizers"] = {"tokenizer_2": {"pad_token": "!"}}
    (config / "model_index.json").write_text(json.dumps(index))
    loaded = load_base(tmp_path / "xl.safetensors", config=config)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        assert_same_weights(sdxl[name], loaded[name])
    # No tokenizer_2 anywhere: the first tokenizer, padding with "!" as OpenCLIP does.
    assert loaded["tokenizer_2"].pad_token == "!" and loaded["tokenizer"].pad_token != "!"
    assert base_family(loaded).startswith("custom")
