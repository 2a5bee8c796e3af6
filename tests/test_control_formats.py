"""Condition-model files: PIA (original pia.ckpt layout), SparseCtrl (original AnimateDiff v3 and diffusers
layouts) and ControlNet (lllyasviel LDM single files, diffusers single files and folders): loading,
detection, the CLI, refusals and round trips, offline."""

from __future__ import annotations

import inspect
import json
import re
import warnings

import pytest
import torch
from safetensors.torch import save_file

from motionkit import FormatError, MotionAdapter, detect_format, inject, load_adapter
from motionkit.cli import main
from motionkit.formats import load_control_model, load_controlnet, load_sparsectrl
from motionkit.formats.diffusers_format import to_diffusers


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-zero everywhere (zero-initialised convolutions would make equality checks vacuous)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return module


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


# --------------------------------------------------------------------------------------------- PIA

PIA_TINY = dict(block_out_channels=(32, 64), use_mid_block=False, image_cond_channels=5, norm_num_groups=8, num_attention_heads=4)
PIA_OVERRIDES = dict(norm_num_groups=8, num_attention_heads=4)  # what weights cannot show


def _pia_original(adapter: MotionAdapter, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """pia.ckpt's layout: AnimateDiff motion modules with their pe tables, plus the 9-channel conv_in and its bias."""
    state = {k: v.clone() for k, v in adapter.state_dict().items() if k != "image_cond_conv.weight"}
    for key, value in list(state.items()):
        if re.search(r"\.attention_blocks\.[01]\.to_q\.weight$", key):
            state[key.replace("to_q.weight", "pos_encoder.pe")] = torch.randn(1, 32, value.shape[0], generator=gen)
    cond = adapter.image_cond_conv.weight
    latent = torch.randn(cond.shape[0], 4, 3, 3, generator=gen)
    state["conv_in.weight"] = torch.cat([latent, cond], dim=1)
    state["conv_in.bias"] = torch.randn(cond.shape[0], generator=gen)
    return state


def test_pia_original_layout_equals_its_diffusers_twin(tmp_path):
    from diffusers import MotionAdapter as DiffusersMotionAdapter, UNetMotionModel

    from tests.test_formats import tiny_unet

    adapter = randomise(MotionAdapter(**PIA_TINY, temporal_norm="across_frames"))
    gen = torch.Generator().manual_seed(1)
    original = _pia_original(adapter, gen)
    torch.save(original, tmp_path / "pia.ckpt")
    # The diffusers twin: the same weights under MotionAdapter's names, conv_in (all 9 channels, bias too) as is.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tensors, config = to_diffusers(adapter)
    tensors["conv_in.weight"], tensors["conv_in.bias"] = original["conv_in.weight"], original["conv_in.bias"]
    twin = DiffusersMotionAdapter(**{k: v for k, v in config.items() if not k.startswith("_")})
    twin.load_state_dict(tensors, strict=True)
    twin.save_pretrained(tmp_path / "twin")

    info = detect_format(tmp_path / "pia.ckpt")
    assert (info.format, info.version, info.max_frames) == ("pia", "original", 32)
    assert info.config["image_cond_channels"] == 5 and "PIA conv_in with 9 input channels" in info.notes[0]
    assert detect_format(tmp_path / "twin").format == "pia"
    from_original = load_adapter(tmp_path / "pia.ckpt", temporal_norm="across_frames", **PIA_OVERRIDES)
    from_twin = load_adapter(tmp_path / "twin")
    assert_same_weights(from_original, from_twin)
    assert torch.equal(from_original.image_cond_conv.weight, adapter.image_cond_conv.weight)

    # Same UNet output as diffusers' own PIA UNet (channels 0-3 and the bias come from the base UNet).
    unet = tiny_unet()
    reference = UNetMotionModel.from_unet2d(tiny_unet(), twin).eval()
    ours = inject(unet, from_original)
    g = torch.Generator().manual_seed(2)
    sample, cond = torch.randn(1, 4, 3, 8, 8, generator=g), torch.randn(1, 5, 3, 8, 8, generator=g)
    text = torch.randn(1, 7, 16, generator=g)
    with torch.no_grad():
        got = ours(sample, 5, text, image_cond=cond).sample
        expected = reference(torch.cat([sample, cond], dim=1), 5, text.repeat_interleave(3, 0)).sample
    assert (got - expected).abs().max() < 1e-5


def test_pia_training_checkpoint_keeps_the_image_branch(tmp_path):
    adapter = randomise(MotionAdapter(**PIA_TINY))
    state = _pia_original(adapter, torch.Generator().manual_seed(0))
    state["down_blocks.0.resnets.0.conv1.weight"] = torch.randn(32, 32, 3, 3)
    torch.save({"epoch": 1, "global_step": 9, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "run.ckpt")
    loaded = load_adapter(tmp_path / "run.ckpt", **PIA_OVERRIDES)
    assert_same_weights(adapter, loaded)
    notes = detect_format(tmp_path / "run.ckpt").notes
    assert "skipped 1 image-UNet tensors" in notes[0] and "PIA" in notes[1]


def test_pia_full_size_key_set_loads(tmp_path):
    """Every key and shape of pia.ckpt (SD1.5 motion modules without a mid block, 32-frame tables,
    conv_in [320, 9, 3, 3]), stored as broadcast rows so the file stays small."""
    with torch.device("meta"):
        reference = MotionAdapter.from_preset("animatediff-v3")
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape[-1], generator=gen).expand(v.shape) for k, v in reference.state_dict().items()}
    for key, value in list(state.items()):
        if key.endswith(".to_q.weight"):
            state[key.replace("to_q.weight", "pos_encoder.pe")] = torch.randn(value.shape[0]).expand(1, 32, value.shape[0])
    state["conv_in.weight"] = torch.randn(3).expand(320, 9, 3, 3)
    state["conv_in.bias"] = torch.randn(320)
    torch.save(state, tmp_path / "pia.ckpt")
    info = detect_format(tmp_path / "pia.ckpt")
    assert (info.format, info.layout) == ("pia", "blocks [320, 640, 1280, 1280] with [2,2,2,2] layers per down block, no mid")
    adapter = load_adapter(tmp_path / "pia.ckpt")
    assert adapter.config.image_cond_channels == 5 and adapter.image_cond_conv.weight.shape == (320, 5, 3, 3)
    assert torch.equal(adapter.image_cond_conv.weight, state["conv_in.weight"][:, 4:])


# --------------------------------------------------------------------------------------------- SparseCtrl

SPARSE_TINY = dict(
    block_out_channels=(32, 64),
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlockMotion", "DownBlockMotion"),
    cross_attention_dim=16,
    conditioning_embedding_out_channels=(8, 16),
)
VARIANTS = {
    "rgb": dict(conditioning_channels=4, use_simplified_condition_embedding=True),
    "scribble": dict(conditioning_channels=3, use_simplified_condition_embedding=False),
}


def tiny_sparsectrl(variant: str, seed: int = 0):
    from diffusers import SparseControlNetModel

    torch.manual_seed(seed)
    return randomise(SparseControlNetModel(**SPARSE_TINY, **VARIANTS[variant]), seed).eval()


def sparsectrl_original(model) -> dict[str, torch.Tensor]:
    """A SparseControlNetModel's weights under the names of AnimateDiff's sparse_controlnet.py (what
    v3_sd15_sparsectrl_*.ckpt hold): motion modules wrap a temporal_transformer with attention_blocks,
    norms, ff_norm and each attention's pos_encoder table; everything else already has diffusers' names."""
    out = {}
    for key, value in model.state_dict().items():
        if ".motion_modules." in key:
            key = re.sub(r"(\.motion_modules\.\d+)\.", r"\1.temporal_transformer.", key)
            key = key.replace(".pos_embed.", ".attention_blocks.0.pos_encoder.").replace(".attn1.", ".attention_blocks.0.")
            key = key.replace(".norm1.", ".norms.0.").replace(".norm3.", ".ff_norm.")
        out[key] = value.clone()
    return out


def _run(model, cond_channels: int):
    g = torch.Generator().manual_seed(3)
    frames = 3
    sample = torch.randn(1, 4, frames, 8, 8, generator=g)
    size = 8 if cond_channels == 4 else 16  # latents as they are; images at the tower's 2x downsampling
    cond = torch.randn(1, cond_channels, frames, size, size, generator=g)
    mask = torch.zeros(1, 1, frames, cond.shape[-2], cond.shape[-1])
    mask[:, :, 0] = 1
    text = torch.randn(frames, 7, 16, generator=g)
    with torch.no_grad():
        out = model(sample, 10, text, controlnet_cond=cond, conditioning_mask=mask, return_dict=False)
    return [*out[0], out[1]]


@pytest.mark.parametrize("variant", ["rgb", "scribble"])
@pytest.mark.parametrize("wrapped", [False, True])
def test_sparsectrl_original_ckpt_loads_into_diffusers_model(tmp_path, variant, wrapped):
    from diffusers import SparseControlNetModel

    model = tiny_sparsectrl(variant)
    state = sparsectrl_original(model)
    assert any(".temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe" in k for k in state)
    # Releases may nest the weights under "controlnet" beside an animatediff_config entry.
    torch.save({"controlnet": state, "animatediff_config": {"x": 1}} if wrapped else state, tmp_path / "sc.ckpt")
    loaded = load_control_model(tmp_path / "sc.ckpt")
    assert isinstance(loaded, SparseControlNetModel)
    assert_same_weights(model, loaded)
    for key in ("conditioning_channels", "use_simplified_condition_embedding", "block_out_channels", "motion_max_seq_length"):
        assert tuple(loaded.config[key]) == tuple(model.config[key]) if isinstance(model.config[key], (list, tuple)) else loaded.config[key] == model.config[key]
    channels = VARIANTS[variant]["conditioning_channels"]
    for got, expected in zip(_run(loaded, channels), _run(model, channels)):
        assert_same_output(got, expected)

    info = detect_format(tmp_path / "sc.ckpt")
    assert (info.format, info.version, info.container, info.max_frames) == ("sparsectrl", variant, "pickle", 32)
    assert info.parameters == sum(p.numel() for p in model.parameters())
    assert f"condition: {channels} channels + 1 mask; own motion modules" in " | ".join(info.notes)


def test_sparsectrl_without_position_tables_and_in_fp16(tmp_path):
    model = tiny_sparsectrl("rgb")
    state = {k: v.half() for k, v in sparsectrl_original(model).items() if "pos_encoder.pe" not in k}
    save_file(state, str(tmp_path / "sc.safetensors"))
    loaded = load_sparsectrl(tmp_path / "sc.safetensors")
    assert loaded.dtype == torch.float16
    for key, value in model.state_dict().items():
        expected = value if key.endswith("pos_embed.pe") else value.half()
        assert torch.equal(loaded.state_dict()[key], expected), key
    assert load_sparsectrl(tmp_path / "sc.safetensors", torch_dtype=torch.float32).dtype == torch.float32


def test_sparsectrl_diffusers_folder_round_trip(tmp_path):
    model = tiny_sparsectrl("scribble", seed=4)
    model.save_pretrained(tmp_path / "folder")
    loaded = load_control_model(tmp_path / "folder")
    assert_same_weights(model, loaded)
    plain = lambda config: json.loads(json.dumps({k: v for k, v in config.items() if not k.startswith("_")}))  # noqa: E731
    assert plain(loaded.config) == plain(model.config)
    info = detect_format(tmp_path / "folder")
    assert (info.format, info.version, info.container) == ("sparsectrl", "scribble", "folder")
    # a bare diffusers-layout single file (the folder's weights alone) reads too
    loaded = load_control_model(tmp_path / "folder" / "diffusion_pytorch_model.safetensors")
    assert_same_weights(model, loaded)
    # and a loaded model saved again reloads equal
    loaded.save_pretrained(tmp_path / "again")
    assert_same_weights(model, load_control_model(tmp_path / "again"))


def _original_key_shapes(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sparsectrl_original(model).items()}


@pytest.mark.parametrize("variant", ["rgb", "scribble"])
def test_sparsectrl_full_size_key_set(tmp_path, variant):
    """The SD1.5 SparseCtrl key list and shapes (built on the meta device: AnimateDiff's configs on SD1.5),
    read back with nothing missing or left over and the config diffusers' converter uses."""
    from diffusers import SparseControlNetModel

    from motionkit.formats.control_layout import infer_encoder_config, sparsectrl_to_diffusers

    with torch.device("meta"):
        reference = SparseControlNetModel(**VARIANTS[variant])  # SD1.5 defaults: 320..1280, 768 context, 32 frames
    original = _original_key_shapes(reference)
    assert len([k for k in original if ".motion_modules." in k and k.endswith("pos_encoder.pe")]) == 8
    assert original["controlnet_cond_embedding.weight" if variant == "rgb" else "controlnet_cond_embedding.conv_in.weight"][:2] == (
        (320, 5) if variant == "rgb" else (16, 4)
    )
    converted = sparsectrl_to_diffusers({k: torch.empty(s, device="meta") for k, s in original.items()})
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in reference.state_dict().items()}

    # A file with exactly these keys and shapes (broadcast rows, so it stays small) loads strictly.
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s[-1], generator=gen).expand(s) for k, s in original.items()}
    torch.save(state, tmp_path / f"v3_sd15_sparsectrl_{variant}.ckpt")
    info = detect_format(tmp_path / f"v3_sd15_sparsectrl_{variant}.ckpt")
    assert (info.format, info.version, info.layout) == ("sparsectrl", variant, "SD 1.x encoder, blocks [320, 640, 1280, 1280]")
    assert info.config["motion_num_attention_heads"] == 8 and info.config["attention_head_dim"] == 8
    structure = infer_encoder_config(converted, "sparsectrl")
    assert structure["cross_attention_dim"] == 768 and structure["layers_per_block"] == 2
    loaded = load_sparsectrl(tmp_path / f"v3_sd15_sparsectrl_{variant}.ckpt")
    for key in ("conditioning_channels", "use_simplified_condition_embedding", "cross_attention_dim", "motion_max_seq_length"):
        assert loaded.config[key] == reference.config[key], key


# --------------------------------------------------------------------------------------------- ControlNet

CONTROLNET_TINY = dict(
    block_out_channels=(32, 64),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    cross_attention_dim=16,
    conditioning_embedding_out_channels=(8, 16),
)

_LDM_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
               "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}


def tiny_controlnet(seed: int = 0, **overrides):
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    return randomise(ControlNetModel(**{**CONTROLNET_TINY, **overrides}), seed).eval()


def controlnet_to_ldm(model, prefix: str = "control_model.") -> dict[str, torch.Tensor]:
    """A ControlNetModel's weights in lllyasviel's cldm layout (input_blocks, zero_convs, input_hint_block)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = DIFFUSERS_TO_LDM_MAPPING["controlnet"]["layers"]
    step = model.config.layers_per_block + 1
    out = {}
    for key, value in model.state_dict().items():
        if key in fixed:
            new = fixed[key]
        elif m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            new = f"input_blocks.{b * step + j + 1}.{0 if kind == 'resnets' else 1}.{rest}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            new = f"input_blocks.{(int(m[1]) + 1) * step}.0.op.{m[2]}"
        elif m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key):
            new = f"middle_block.{2 * int(m[2]) if m[1] == 'resnets' else 1}.{m[3]}"
        elif m := re.match(r"controlnet_down_blocks\.(\d+)\.(.*)", key):
            new = f"zero_convs.{m[1]}.0.{m[2]}"
        elif m := re.match(r"controlnet_mid_block\.(.*)", key):
            new = f"middle_block_out.0.{m[1]}"
        elif m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.(.*)", key):
            new = f"input_hint_block.{2 * (int(m[1]) + 1)}.{m[2]}"
        else:
            raise AssertionError(f"no LDM name for {key}")
        if ".resnets." in key:
            for name, ldm in _LDM_RESNET.items():
                new = new.replace(f".{name}.", f".{ldm}.")
        out[prefix + new] = value.clone()
    return out


def assert_same_output(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal weights give equal outputs up to the last bits: the CPU convolution kernel can differ for a
    tensor read from a file (another memory layout) from one built in memory."""
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def _controlnet_output(model):
    g = torch.Generator().manual_seed(5)
    sample, text = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 7, model.config.cross_attention_dim, generator=g)
    cond = torch.rand(1, 3, 16, 16, generator=g)  # the tower (8, 16) downsamples 2x
    kwargs = {}
    if model.config.addition_embed_type == "text_time":
        kwargs["added_cond_kwargs"] = {"text_embeds": torch.randn(1, 8, generator=g), "time_ids": torch.randn(1, 6, generator=g)}
    with torch.no_grad():
        down, mid = model(sample, 10, text, controlnet_cond=cond, return_dict=False, **kwargs)
    return [*down, mid]


@pytest.mark.parametrize("name, prefix", [("control_v11p_sd15_openpose.pth", "control_model."), ("control_sd15_canny.safetensors", "control_model."), ("controlnet_bare.ckpt", "")])
def test_controlnet_ldm_single_files(tmp_path, name, prefix):
    from diffusers import ControlNetModel

    model = tiny_controlnet()
    state = controlnet_to_ldm(model, prefix)
    if name.startswith("control_sd15_canny"):
        # ControlNet 1.0 files carry the whole SD model they were trained with.
        state["model.diffusion_model.out.2.weight"] = torch.randn(4, 32, 3, 3)
        state["first_stage_model.decoder.conv_out.bias"] = torch.randn(3)
    path = tmp_path / name
    save_file(state, str(path)) if path.suffix == ".safetensors" else torch.save(state, path)
    loaded = load_controlnet(path)
    assert isinstance(loaded, ControlNetModel)
    assert_same_weights(model, loaded)
    for got, expected in zip(_controlnet_output(loaded), _controlnet_output(model)):
        assert_same_output(got, expected)
    info = detect_format(path)
    assert (info.format, info.version) == ("controlnet", "custom")
    assert info.notes[0] == "ControlNet (original LDM layout)"
    assert ("skipped 2 others" in info.notes[1]) is name.startswith("control_sd15_canny")


def test_controlnet_heads_override_and_diffusers_folder(tmp_path):
    model = tiny_controlnet(attention_head_dim=4, seed=2)  # not the family's 8 heads: weights cannot show it
    save_file(controlnet_to_ldm(model), str(tmp_path / "cn.safetensors"))
    loaded = load_control_model(tmp_path / "cn.safetensors", config={"attention_head_dim": 4})
    for got, expected in zip(_controlnet_output(loaded), _controlnet_output(model)):
        assert_same_output(got, expected)
    default_heads = load_control_model(tmp_path / "cn.safetensors")
    assert_same_weights(model, default_heads)
    assert default_heads.config.attention_head_dim == 8

    model.save_pretrained(tmp_path / "folder")
    from_folder = load_control_model(tmp_path / "folder", torch_dtype=torch.float16)
    assert from_folder.dtype == torch.float16 and from_folder.config.attention_head_dim == 4
    info = detect_format(tmp_path / "folder")
    assert (info.format, info.container, info.notes[0]) == ("controlnet", "folder", "ControlNet (diffusers folder)")


def test_sdxl_controlnet_single_file_in_diffusers_layout(tmp_path):
    model = tiny_controlnet(
        block_out_channels=(32, 64), cross_attention_dim=24, transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=8 + 6 * 8,
        use_linear_projection=True, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    )
    save_file(model.state_dict(), str(tmp_path / "diffusion_pytorch_model.safetensors"))
    loaded = load_controlnet(tmp_path / "diffusion_pytorch_model.safetensors", config={"addition_time_embed_dim": 8})
    assert_same_weights(model, loaded)
    assert loaded.config.transformer_layers_per_block == (1, 2) and loaded.config.use_linear_projection
    for got, expected in zip(_controlnet_output(loaded), _controlnet_output(model)):
        assert_same_output(got, expected)


@pytest.mark.parametrize("family, label", [("sd15", "SD 1.x"), ("sd2", "SD 2.x"), ("sdxl", "SDXL")])
def test_full_size_controlnet_key_sets(tmp_path, family, label):
    """Full-size ControlNets of each family (meta device: keys and shapes only) written in the layout they ship
    in (LDM for SD 1.x/2.x, diffusers for SDXL) read back as that family's ControlNetModel."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    from motionkit.formats.control import read_control_checkpoint
    from motionkit.formats.checkpoint import Checkpoint
    from motionkit.pipeline.loading import config_dir

    unet_config = UNet2DConditionModel.load_config(str(config_dir(family)), subfolder="unet")
    with torch.device("meta"):
        reference = ControlNetModel.from_unet(UNet2DConditionModel.from_config(unet_config), load_weights_from_unet=False)
    state = {k: torch.empty(v.shape, device="meta") for k, v in reference.state_dict().items()}
    if family != "sdxl":
        state = controlnet_to_ldm(reference)
    control = read_control_checkpoint(Checkpoint(tmp_path / "cn.safetensors", "safetensors", state, {}, {}, None), "controlnet")
    assert control.family == family
    assert {k: tuple(v.shape) for k, v in control.state_dict.items()} == {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    defaults = {name: p.default for name, p in inspect.signature(ControlNetModel.__init__).parameters.items()}
    for key, value in reference.config.items():
        if not key.startswith("_"):
            got = control.config.get(key, defaults[key])
            assert (tuple(got) if isinstance(got, list) else got) == (tuple(value) if isinstance(value, list) else value), key


# --------------------------------------------------------------------------------------------- refusals, CLI


def test_load_adapter_refuses_condition_encoders_in_one_line(tmp_path):
    torch.save(sparsectrl_original(tiny_sparsectrl("rgb")), tmp_path / "sc.ckpt")
    save_file(controlnet_to_ldm(tiny_controlnet()), str(tmp_path / "cn.safetensors"))
    with pytest.raises(FormatError, match=r"this is a SparseCtrl encoder, not a motion adapter: pass it with --sparsectrl") as err:
        load_adapter(tmp_path / "sc.ckpt")
    assert "\n" not in str(err.value)
    with pytest.raises(FormatError, match=r"this is a ControlNet, not a motion adapter: pass it with --controlnet"):
        load_adapter(tmp_path / "cn.safetensors")
    tiny_sparsectrl("scribble").save_pretrained(tmp_path / "sc_folder")
    with pytest.raises(FormatError, match=r"this is a SparseCtrl encoder, not a motion adapter"):
        load_adapter(tmp_path / "sc_folder")
    with pytest.raises(FormatError, match=r"not a SparseCtrl encoder: pass it with --controlnet"):
        load_sparsectrl(tmp_path / "cn.safetensors")
    with pytest.raises(FormatError, match=r"not a ControlNet: pass it with --sparsectrl"):
        load_controlnet(tmp_path / "sc.ckpt")


def test_bad_and_truncated_control_files(tmp_path):
    state = controlnet_to_ldm(tiny_controlnet())
    save_file(state, str(tmp_path / "cn.safetensors"))
    data = (tmp_path / "cn.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="truncated or corrupt"):
        load_control_model(tmp_path / "cut.safetensors")
    del state["control_model.zero_convs.3.0.weight"]
    save_file(state, str(tmp_path / "missing.safetensors"))
    with pytest.raises(FormatError, match=r"lacks 1 weights \(controlnet_down_blocks.3.weight\)"):
        load_control_model(tmp_path / "missing.safetensors")

    sparse = sparsectrl_original(tiny_sparsectrl("rgb"))
    sparse["down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.extra.weight"] = torch.zeros(2)
    torch.save(sparse, tmp_path / "extra.ckpt")
    with pytest.raises(FormatError, match=r"1 weights fit nowhere in the model \(down_blocks.0.motion_modules.0.transformer_blocks.0.extra.weight\)"):
        load_control_model(tmp_path / "extra.ckpt")
    with pytest.raises(FormatError, match="not a ControlNet or SparseCtrl encoder"):
        save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
        load_control_model(tmp_path / "other.safetensors")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel"}))
    with pytest.raises(FormatError, match="without diffusion_pytorch_model"):
        load_control_model(tmp_path / "folder")


def test_cli_inspect_names_each_kind(tmp_path, capsys):
    torch.save(sparsectrl_original(tiny_sparsectrl("scribble")), tmp_path / "sc.ckpt")
    save_file(controlnet_to_ldm(tiny_controlnet()), str(tmp_path / "cn.safetensors"))
    adapter = randomise(MotionAdapter(**PIA_TINY))
    torch.save(_pia_original(adapter, torch.Generator().manual_seed(0)), tmp_path / "pia.ckpt")

    assert main(["inspect", str(tmp_path / "sc.ckpt")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"format\s+sparsectrl \(scribble\)", out) and "condition" in out and "--sparsectrl" in out
    assert re.search(r"motion modules\s+yes, up to 32 frames", out)
    assert main(["inspect", str(tmp_path / "cn.safetensors")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"format\s+controlnet \(custom\)", out) and "--controlnet" in out
    assert main(["inspect", str(tmp_path / "pia.ckpt")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"format\s+pia \(original\)", out) and re.search(r"image condition\s+5 channels", out)
    assert main(["inspect", "--json", str(tmp_path / "sc.ckpt")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["format"], info["version"], info["config"]["conditioning_channels"]) == ("sparsectrl", "scribble", 3)
