"""Load a base image model (a personalized Stable Diffusion checkpoint) as pipeline components, offline.

Two sources:
- a diffusers pipeline folder (``model_index.json`` plus one subfolder per component);
- one single-file checkpoint in the original LDM layout (``.safetensors``, or ``.ckpt`` read with
  ``torch.load(weights_only=True)``) for SD 1.x, SD 2.x (512 epsilon or 768 v-prediction) and SDXL.

Single files carry weights but no configs and no tokenizer. The configs ship with motionkit
(``motionkit/configs/<family>/``, diffusers-format folders) and the weights are renamed with diffusers'
LDM conversion functions, so nothing is ever fetched from the hub. ``config=`` replaces the shipped
folder (tiny test models, unusual architectures).
"""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path
from typing import Any

import torch

from motionkit.errors import FormatError, LayoutMismatchError, MotionkitError
from motionkit.utils.meta_load import empty_model, load_into

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
FAMILIES: dict[str, str] = {
    "sd15": "SD 1.x",
    "sd2": "SD 2.x (512, epsilon)",
    "sd2-v": "SD 2.x (768, v-prediction)",
    "sdxl": "SDXL",
}
MODEL_COMPONENTS = ("vae", "text_encoder", "text_encoder_2", "unet")
TOKENIZER_COMPONENTS = ("tokenizer", "tokenizer_2")
COMPONENTS = (*MODEL_COMPONENTS, *TOKENIZER_COMPONENTS, "scheduler")

_LDM_UNET = "model.diffusion_model."
_CONFIG_FIX = "pass the right config folder with --base-config"
# SD 2 base (512, epsilon) was released at this training step; every other SD 2 checkpoint is the 768-v model.
# The same heuristic as diffusers' original-checkpoint converter.
_SD2_BASE_GLOBAL_STEP = 875000
# Where each text encoder sits in original checkpoints: transformers (HF) layout or OpenCLIP layout.
_TEXT_ENCODER_PREFIXES = {
    "text_encoder": {
        "hf": ("cond_stage_model.transformer.", "conditioner.embedders.0.transformer."),
        "open_clip": ("cond_stage_model.model.",),
    },
    "text_encoder_2": {
        "hf": ("conditioner.embedders.1.transformer.",),
        "open_clip": ("conditioner.embedders.1.model.",),
    },
}


# --------------------------------------------------------------------------------------------- families


def config_dir(family: str) -> Path:
    """The shipped diffusers-format config folder of a family (``sd15``, ``sd2``, ``sd2-v``, ``sdxl``)."""
    if family not in FAMILIES:
        raise MotionkitError(f"unknown base model family {family!r}: choose one of {', '.join(FAMILIES)}")
    return CONFIGS_DIR / family


def _prediction_type(state_dict: dict[str, Any], metadata: dict[str, str]) -> str | None:
    """``v_prediction``/``epsilon`` when the file says so (ModelSpec or kohya metadata, a ``v_pred`` marker key)."""
    spec = str(metadata.get("modelspec.prediction_type", "")).lower()
    if spec in ("v", "v_prediction", "v-prediction"):
        return "v_prediction"
    if spec in ("epsilon", "eps"):
        return "epsilon"
    kohya = str(metadata.get("ss_v_parameterization", "")).lower()
    if kohya in ("true", "false"):
        return "v_prediction" if kohya == "true" else "epsilon"
    if "v_pred" in state_dict:
        return "v_prediction"
    return None


def detect_family(state_dict: dict[str, Any], metadata: dict[str, str] | None = None) -> str:
    """The family of an original-layout checkpoint from its keys (and shapes, metadata): one of ``FAMILIES``.

    Uses diffusers' ``infer_diffusers_model_type``; refuses what motionkit cannot animate (inpainting,
    refiner, upscaler, other architectures) and files that are not a base model at all.
    """
    from diffusers.loaders.single_file_utils import CHECKPOINT_KEY_NAMES, infer_diffusers_model_type

    metadata = metadata or {}
    if CHECKPOINT_KEY_NAMES["animatediff"] in state_dict:
        raise FormatError("this file is a motion module, not a base image model: pass it as the adapter")
    if not any(key.startswith(_LDM_UNET) for key in state_dict):
        raise FormatError(
            "not a Stable Diffusion checkpoint in the original layout (no 'model.diffusion_model.*' UNet keys): "
            "pass a full SD 1.x/2.x/SDXL .safetensors/.ckpt, or a diffusers pipeline folder"
        )
    kind = infer_diffusers_model_type(state_dict)
    if kind == "v1":
        return "sd15"
    if kind == "xl_base":
        return "sdxl"
    if kind == "v2":
        prediction = _prediction_type(state_dict, metadata)
        if prediction is None and state_dict.get("global_step") is not None:
            step = state_dict["global_step"]
            step = int(step.item() if isinstance(step, torch.Tensor) else step)
            prediction = "epsilon" if step == _SD2_BASE_GLOBAL_STEP else "v_prediction"
        return "sd2" if prediction == "epsilon" else "sd2-v"
    raise FormatError(
        f"this checkpoint is a {kind!r} model, which motion adapters cannot animate: "
        "use a text-to-image SD 1.x, SD 2.x or SDXL checkpoint"
    )


def base_family(components: dict[str, Any]) -> str:
    """A readable family name for loaded components, from the UNet's config (for messages and metadata)."""
    unet = _plain_unet(components["unet"])
    cfg = unet.config
    channels = tuple(cfg.block_out_channels)
    if cfg.get("addition_embed_type") == "text_time" and channels == (320, 640, 1280):
        return "SDXL"
    if channels == (320, 640, 1280, 1280):
        return {768: "SD 1.x", 1024: "SD 2.x"}.get(cfg.cross_attention_dim, "SD-like")
    return f"custom (blocks {list(channels)})"


def _adapter_family(adapter: Any) -> str:
    channels = tuple(adapter.config.block_out_channels)
    return {(320, 640, 1280, 1280): "SD 1.x/2.x", (320, 640, 1280): "SDXL"}.get(channels, f"custom (blocks {list(channels)})")


def _plain_unet(unet: Any) -> Any:
    # A UNet with an adapter injected is wrapped in MotionUNet; LoRAs and checks want the diffusers UNet.
    return getattr(unet, "unet", unet)


# --------------------------------------------------------------------------------------------- reading


def read_base_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The tensors and safetensors metadata of a single-file checkpoint; ``state_dict`` wrappers removed."""
    from motionkit.formats.safe_load import read_tensor_file

    state_dict, metadata = read_tensor_file(path, mmap=True)
    while isinstance(state_dict.get("state_dict"), dict):
        outer = state_dict
        state_dict = dict(state_dict["state_dict"])
        if "global_step" in outer and "global_step" not in state_dict:
            state_dict["global_step"] = outer["global_step"]
    return state_dict, metadata


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FormatError(f"{path}: missing; a config folder needs model_index.json and a config per component") from None
    except (OSError, ValueError) as err:
        raise FormatError(f"{path}: not readable JSON ({err}); fix or replace the config folder") from None


def _component_class(index: dict[str, Any], name: str) -> type | None:
    entry = index.get(name)
    if not entry or not isinstance(entry, (list, tuple)) or entry[0] is None or entry[1] is None:
        return None
    library, class_name = entry[0], entry[1]
    if library not in ("diffusers", "transformers"):
        raise FormatError(f"component {name!r} comes from {library!r}; only diffusers and transformers components load")
    try:
        return getattr(importlib.import_module(library), class_name)
    except AttributeError:
        raise FormatError(f"component {name!r} names {library}.{class_name}, which this {library} lacks: upgrade {library}") from None


# --------------------------------------------------------------------------------------------- tokenizers


def _tokenizer_files(folder: Path) -> bool:
    bpe = (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    return bpe or (folder / "tokenizer.json").is_file()


def _tokenizer_folder(root: Path, name: str) -> Path | None:
    """``root/name`` (a pipeline folder) or ``root`` itself (a bare tokenizer folder, only for the first tokenizer)."""
    for folder in (root / name, root) if name == "tokenizer" else (root / name,):
        if folder.is_dir() and _tokenizer_files(folder):
            return folder
    return None


def _hub_cache_folder(repo: str) -> Path | None:
    """The snapshot folder of ``repo`` in the local Hugging Face cache, if its tokenizer files are there (no network)."""
    from huggingface_hub import try_to_load_from_cache

    for files in (("tokenizer.json",), ("vocab.json", "merges.txt")):
        found = [try_to_load_from_cache(repo, filename) for filename in files]
        if all(isinstance(f, str) for f in found):
            return Path(found[0]).parent
    return None


def _load_tokenizer(folder: Path, cls: type | None, **kwargs: Any) -> Any:
    from transformers import CLIPTokenizer

    try:
        return (cls or CLIPTokenizer).from_pretrained(str(folder), local_files_only=True, **kwargs)
    except (OSError, ValueError) as err:
        raise FormatError(f"{folder}: not a loadable tokenizer folder ({str(err).splitlines()[0]})") from None


def _find_tokenizers(
    names: list[str], index: dict[str, Any], places: list[Path], given: Any, source: Path
) -> dict[str, Any]:
    """Tokenizers for a single file: ``given`` (an object or folder), then ``places`` (config folder, beside the
    checkpoint), then the local HF cache (repos named in the config's ``_motionkit_tokenizers``)."""
    found: dict[str, Any] = {}
    hints = index.get("_motionkit_tokenizers") or {}
    given_folder = Path(given) if isinstance(given, (str, Path)) else None
    if given_folder is not None and not given_folder.is_dir():
        raise FileNotFoundError(f"{given_folder}: no such tokenizer folder; check the --tokenizer path")
    for name in names:
        cls = _component_class(index, name)
        hint = hints.get(name) or {}
        kwargs = {"pad_token": hint["pad_token"]} if hint.get("pad_token") else {}
        if given is not None and given_folder is None and name == "tokenizer":
            found[name] = given
            continue
        roots = ([given_folder] if given_folder is not None else []) + places
        folder = next((f for f in (_tokenizer_folder(r, name) for r in roots) if f is not None), None)
        if folder is None and hint.get("repo"):
            folder = _hub_cache_folder(hint["repo"])
        if folder is None and name != "tokenizer" and "tokenizer" in found:
            # SDXL's second encoder (OpenCLIP bigG) uses the same BPE vocabulary as CLIP ViT-L and only pads
            # differently, so a copy of the first tokenizer serves once its pad token is set.
            second = copy.deepcopy(found["tokenizer"])
            if kwargs:
                second.pad_token = kwargs["pad_token"]
            found[name] = second
            continue
        if folder is None:
            repo = hint.get("repo", "openai/clip-vit-large-patch14")
            raise MotionkitError(
                f"{source}: single-file checkpoints carry no tokenizer and none was found for {name}: pass --tokenizer DIR "
                f"(a CLIP tokenizer folder, or a diffusers pipeline folder holding {name}/), put a {name}/ folder beside "
                f"the checkpoint, or have {repo} in the local Hugging Face cache"
            )
        found[name] = _load_tokenizer(folder, cls, **kwargs)
    return found


# --------------------------------------------------------------------------------------------- single file


def _text_encoder_state(name: str, model: torch.nn.Module, checkpoint: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

    prefixes = _TEXT_ENCODER_PREFIXES[name]
    converted = None
    for prefix in prefixes["hf"]:
        if any(key.startswith(prefix) for key in checkpoint):
            converted = {k[len(prefix):]: v for k, v in checkpoint.items() if k.startswith(prefix)}
            break
    else:
        for prefix in prefixes["open_clip"]:
            if any(key.startswith(prefix) for key in checkpoint):
                converted = convert_open_clip_checkpoint(model, checkpoint, prefix=prefix)
                break
    if converted is None:
        return None
    # transformers >= 5.6 flattened CLIPTextModel (no ``text_model.`` level); older ones and
    # CLIPTextModelWithProjection keep it. Match whatever the model in hand expects.
    wrapped = any(k.startswith("text_model.") for k in model.state_dict())
    fixed = {}
    for key, value in converted.items():
        bare = key.removeprefix("text_model.")
        fixed[f"text_model.{bare}" if wrapped and bare != "text_projection.weight" else bare] = value
    return fixed


def _load_single_file(
    path: Path, config: str | Path | None, family: str | None, tokenizer: Any
) -> dict[str, Any]:
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    checkpoint, metadata = read_base_checkpoint(path)
    checkpoint = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if config is not None:
        cfg_dir = Path(config)
        if not cfg_dir.is_dir():
            raise FileNotFoundError(f"{cfg_dir}: no such config folder; --base-config takes a diffusers-format folder")
    else:
        try:
            cfg_dir = config_dir(family or detect_family(checkpoint, metadata))
        except FormatError as err:
            raise FormatError(f"{path}: {err}") from None
    index = _read_json(cfg_dir / "model_index.json")
    where = str(path)

    components: dict[str, Any] = {}
    for name in MODEL_COMPONENTS:
        cls = _component_class(index, name)
        if cls is None:
            continue
        if name in ("unet", "vae"):
            model_config = _read_json(cfg_dir / name / "config.json")
            model = empty_model(cls, model_config)
            convert = convert_ldm_unet_checkpoint if name == "unet" else convert_ldm_vae_checkpoint
            state = convert(checkpoint, model_config)
            load_into(model, state, f"{where} ({name})", _CONFIG_FIX)
        else:
            model_config = cls.config_class.from_pretrained(str(cfg_dir / name), local_files_only=True)
            model = empty_model(cls, model_config)
            state = _text_encoder_state(name, model, checkpoint)
            if state is None:
                raise FormatError(
                    f"{where}: no {name.replace('_', ' ')} weights in this checkpoint: it holds only part of a pipeline; "
                    "use a full checkpoint or a diffusers folder"
                )
            load_into(model, state, f"{where} ({name})", _CONFIG_FIX)
        components[name] = model.eval()

    scheduler_config = _read_json(cfg_dir / "scheduler" / "scheduler_config.json")
    scheduler_cls = getattr(importlib.import_module("diffusers"), scheduler_config.get("_class_name", "DDIMScheduler"))
    prediction = _prediction_type(checkpoint, metadata)
    overrides = {"prediction_type": prediction} if prediction else {}
    components["scheduler"] = scheduler_cls.from_config(scheduler_config, **overrides)

    names = [n for n in TOKENIZER_COMPONENTS if _component_class(index, n) is not None]
    places = [cfg_dir, path.parent]
    components.update(_find_tokenizers(names, index, places, tokenizer, path))
    return components


# --------------------------------------------------------------------------------------------- diffusers folder


def _load_folder(path: Path, dtype: torch.dtype, tokenizer: Any) -> dict[str, Any]:
    index = _read_json(path / "model_index.json")
    components: dict[str, Any] = {}
    missing_tokenizers = []
    for name in COMPONENTS:
        cls = _component_class(index, name)
        if cls is None:
            continue
        sub = path / name
        if name in TOKENIZER_COMPONENTS:
            if tokenizer is None and sub.is_dir():
                components[name] = _load_tokenizer(sub, cls)
            else:
                missing_tokenizers.append(name)
            continue
        if not sub.is_dir():
            raise FormatError(f"{path}: model_index.json lists {name} but there is no {name}/ folder; the download is incomplete")
        try:
            if name == "scheduler":
                components[name] = cls.from_pretrained(str(path), subfolder=name, local_files_only=True)
            elif cls.__module__.startswith("transformers"):
                components[name] = cls.from_pretrained(str(sub), dtype=dtype, local_files_only=True).eval()
            else:
                components[name] = cls.from_pretrained(str(path), subfolder=name, torch_dtype=dtype, local_files_only=True).eval()
        except (OSError, ValueError) as err:
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise FormatError(f"{sub}: cannot load {name} ({detail}): the folder is incomplete or corrupt") from None
    if "unet" not in components:
        raise FormatError(f"{path}: model_index.json lists no unet; point at an image pipeline folder (SD 1.x/2.x/SDXL)")
    if missing_tokenizers:
        components.update(_find_tokenizers(missing_tokenizers, index, [path], tokenizer, path))
    return components


# --------------------------------------------------------------------------------------------- entry points


def load_base(
    path: str | Path,
    *,
    config: str | Path | None = None,
    family: str | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    tokenizer: Any = None,
) -> dict[str, Any]:
    """Components ``vae, text_encoder, tokenizer, unet, scheduler`` (plus ``text_encoder_2, tokenizer_2`` for
    SDXL) of a base model, loaded without network access.

    ``path``: a diffusers pipeline folder (with ``model_index.json``) or a single ``.safetensors``/``.ckpt`` in
    the original LDM layout. For single files the family is read from the weights unless ``family`` is given
    (``sd15``, ``sd2``, ``sd2-v``, ``sdxl``), and ``config`` (a diffusers-format folder) replaces the shipped
    configs. ``tokenizer``: a tokenizer or a folder; single files have none, so without it one is looked
    for in the config folder, beside the checkpoint, then in the local Hugging Face cache.
    A folder carries its own configs, so ``config`` and ``family`` only apply to single files.
    Models are in ``dtype`` (float32 when not given) on ``device`` (CPU when not given), in eval mode.
    """
    path = Path(path)
    dtype = dtype or torch.float32
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such base model; pass a diffusers folder or a .safetensors/.ckpt file")
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise FormatError(
                f"{path}: a folder without model_index.json; pass a diffusers pipeline folder or a single "
                ".safetensors/.ckpt checkpoint"
            )
        components = _load_folder(path, dtype, tokenizer)
    else:
        components = _load_single_file(path, config, family, tokenizer)
    target = torch.device(device or "cpu")
    for name in MODEL_COMPONENTS:
        model = components.get(name)
        param = next(model.parameters(), None) if model is not None else None
        if param is not None and (param.dtype != dtype or param.device.type != target.type):
            # nn.Module.to: diffusers' own .to warns about fp32-pinned modules these base models do not have.
            torch.nn.Module.to(model, device=target, dtype=dtype)
    return components


def load_adapter_for(base_components: dict[str, Any], adapter_path: str | Path, **overrides: Any) -> Any:
    """Load a motion adapter with ``motionkit.load_adapter`` and check that it fits the base UNet.

    Refuses, in one line and before any sampling, an adapter made for another family (an SDXL adapter on
    an SD 1.5 base, or the reverse). ``overrides`` go to ``load_adapter``.
    """
    from motionkit.formats import load_adapter
    from motionkit.injection import check_fits

    adapter = load_adapter(adapter_path, **overrides)
    unet = _plain_unet(base_components["unet"])
    try:
        check_fits(unet, adapter)
    except LayoutMismatchError as err:
        raise LayoutMismatchError(
            f"{adapter_path}: a {_adapter_family(adapter)} motion adapter does not fit this {base_family(base_components)} "
            f"base ({err})"
        ) from None
    return adapter
