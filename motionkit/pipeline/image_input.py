"""Conditioning images from whatever the user has: a path, PIL image, numpy array or tensor.

Any size or aspect is accepted: the image is resized to cover the requested size and centre-cropped,
so nothing is stretched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import PIL.Image
import torch
from diffusers.image_processor import VaeImageProcessor

from motionkit.errors import MotionkitError

ImageInput = Union[str, Path, PIL.Image.Image, np.ndarray, torch.Tensor]


def load_image(image: ImageInput) -> PIL.Image.Image:
    """An RGB PIL image. Arrays are ``[H, W, C]`` (uint8, or floats in [0, 1]); tensors ``[C, H, W]`` in [0, 1]."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise MotionkitError(f"conditioning image {path} does not exist: give the path of a PNG, JPEG or WebP file")
        try:
            with PIL.Image.open(path) as opened:
                opened.load()
                return opened.convert("RGB")
        except PIL.Image.DecompressionBombError:
            limit = PIL.Image.MAX_IMAGE_PIXELS
            raise MotionkitError(
                f"{path} has too many pixels (over {2 * limit:,}, twice the {limit:,}-pixel limit for images): "
                "give a smaller image; it is resized to the video's size anyway"
            ) from None
        except (PIL.UnidentifiedImageError, OSError, ValueError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise MotionkitError(
                f"{path} is not a readable image ({reason}): give a PNG, JPEG or WebP file"
            ) from None
    if isinstance(image, PIL.Image.Image):
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        tensor = image.detach().float().cpu()
        if tensor.ndim == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.ndim != 3 or tensor.shape[0] not in (1, 3, 4):
            raise MotionkitError(f"an image tensor must be [C, H, W] with 1, 3 or 4 channels, got {tuple(image.shape)}")
        image = tensor.permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
            raise MotionkitError(f"an image array must be [H, W, C] with 1, 3 or 4 channels, got {image.shape}")
        if array.dtype != np.uint8:
            array = (np.clip(array.astype(np.float32), 0.0, 1.0) * 255).round().astype(np.uint8)
        if array.shape[-1] == 1:
            array = np.repeat(array, 3, axis=-1)
        return PIL.Image.fromarray(array[..., :3])
    raise MotionkitError(f"cannot use a {type(image).__name__} as an image: give a path, PIL image, array or tensor")


def prepare_image(image: ImageInput, height: int, width: int, processor: VaeImageProcessor) -> torch.Tensor:
    """``[1, 3, height, width]`` in [-1, 1], resized to cover the size and centre-cropped."""
    return processor.preprocess(load_image(image), height=height, width=width, resize_mode="crop")


def vae_round_trip(vae: torch.nn.Module, frames: np.ndarray) -> np.ndarray:
    """uint8 ``[F, H, W, 3]`` through ``vae`` (encode, the posterior's mode, decode), back to uint8: the
    ceiling of any video the model decodes, as adherence figures are quoted against it."""
    batch = torch.from_numpy(np.array(frames, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    batch = batch.to(vae.device, vae.dtype)
    with torch.no_grad():
        decoded = vae.decode(vae.encode(batch).latent_dist.mode()).sample
    return ((decoded.float().permute(0, 2, 3, 1).cpu().numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)
