"""IP-Adapter settings given as text (command line, batch files): what to load and what to pass a pipeline.

``--ip-adapter PATH[:SCALE]`` with ``--ip-encoder DIR`` (default: the ``image_encoder/`` folder beside the
file, as the h94 repository lays it out) and ``--ip-image IMAGE`` or, repeated, ``--ip-image FRAME:IMAGE``
(each frame takes the latest image keyed at or before it); ``--ip-scale FRAME:SCALE`` (repeatable) ramps the
scale over frames instead of the constant ``:SCALE``. Everything here is checked before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from motionkit.errors import MotionkitError


@dataclass(frozen=True)
class IPAdapterPlan:
    path: str
    scale: float
    encoder: str
    images: tuple[tuple[int, str], ...]  # (frame, image), frame 0 for a single image
    scales: tuple[tuple[int, float], ...] = ()  # a per-frame schedule, or () for the constant scale

    def check_frames(self, num_frames: int, where: str = "") -> None:
        at = f"{where}: " if where else ""
        for frame, _ in self.images + self.scales:
            if not -num_frames <= frame < num_frames:
                raise MotionkitError(f"{at}IP-Adapter frame {frame} is out of range for {num_frames} frames")

    def load(self, pipe: Any) -> None:
        from motionkit.pipeline.ip_adapter import load_ip_adapters

        load_ip_adapters(pipe, self.path, self.encoder, self.scale)

    def call_kwargs(self) -> dict[str, Any]:
        """The IP-Adapter arguments of ``MotionPipeline.__call__``."""
        from motionkit.pipeline.image_input import load_image

        images = {frame: load_image(image) for frame, image in self.images}
        return {
            "ip_adapter_image": images[0] if list(images) == [0] else images,
            "ip_adapter_scale": dict(self.scales) if self.scales else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """What the sidecar JSON records."""
        return {
            "path": self.path, "scale": self.scale, "encoder": self.encoder,
            "images": [{"frame": f, "image": i} for f, i in self.images],
            "scales": [{"frame": f, "scale": s} for f, s in self.scales],
        }


def _keyed(spec: Any, flag: str, value_name: str) -> tuple[int | None, str]:
    """``FRAME:VALUE`` (or ``{frame, <value_name>}``) as ``(frame, value)``; a bare value gives ``(None, value)``."""
    if isinstance(spec, dict):
        if value_name not in spec:
            raise MotionkitError(f"bad {flag} entry {spec!r}: give {{frame: ..., {value_name}: ...}}")
        return (int(spec["frame"]) if "frame" in spec else None), str(spec[value_name])
    text = str(spec)
    head, sep, tail = text.partition(":")
    try:
        return (int(head), tail) if sep else (None, text)
    except ValueError:
        return None, text  # a path with a colon in it


def ip_adapter_plan(
    ip_adapter: Any = None, ip_encoder: Any = None, ip_image: Any = None, ip_scale: Any = None
) -> IPAdapterPlan | None:
    """The IP-Adapter of a run from its text settings; ``None`` when none is asked for."""
    from motionkit.pipeline.lora import parse_lora_spec

    images = ip_image if isinstance(ip_image, (list, tuple)) else ([] if ip_image is None else [ip_image])
    scales = ip_scale if isinstance(ip_scale, (list, tuple)) else ([] if ip_scale is None else [ip_scale])
    if ip_adapter is None:
        if images or scales or ip_encoder is not None:
            raise MotionkitError("--ip-image, --ip-scale and --ip-encoder need an IP-Adapter: pass --ip-adapter PATH[:SCALE]")
        return None
    if isinstance(ip_adapter, (list, tuple)):
        if len(ip_adapter) != 1:
            raise MotionkitError("give one --ip-adapter; several IP-Adapters are for the Python API (load_ip_adapters)")
        ip_adapter = ip_adapter[0]
    if isinstance(ip_adapter, dict) and "path" in ip_adapter:
        path, scale = str(ip_adapter["path"]), float(ip_adapter.get("scale", 1.0))
    else:
        try:
            path, scale = parse_lora_spec(str(ip_adapter))
        except MotionkitError:
            raise MotionkitError(f"bad --ip-adapter value {ip_adapter!r}: give PATH or PATH:SCALE, e.g. ip-adapter_sd15.bin:0.6") from None
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such IP-Adapter file; check --ip-adapter")
    encoder = Path(ip_encoder) if ip_encoder is not None else Path(path).parent / "image_encoder"
    if not (encoder / "config.json").is_file():
        raise MotionkitError(
            f"{encoder}: no CLIP image encoder there (no config.json): pass --ip-encoder DIR, the image_encoder/ folder "
            "that comes with the IP-Adapter"
        )
    if not images:
        raise MotionkitError("--ip-adapter needs a reference image: pass --ip-image IMAGE (or FRAME:IMAGE, repeated)")
    keyed_images = []
    for spec in images:
        frame, image = _keyed(spec, "--ip-image", "image")
        if frame is None and len(images) > 1:
            raise MotionkitError("several --ip-image values each need their frame: write FRAME:IMAGE, e.g. 0:a.png 16:b.png")
        if not Path(image).is_file():
            raise FileNotFoundError(f"{image}: no such image; check --ip-image")
        keyed_images.append((0 if frame is None else frame, image))
    if len({frame for frame, _ in keyed_images}) != len(keyed_images):
        raise MotionkitError("two --ip-image values key the same frame: give each frame one image")
    keyed_scales = []
    for spec in scales:
        frame, value = _keyed(spec, "--ip-scale", "scale")
        try:
            if frame is None:
                raise ValueError
            keyed_scales.append((frame, float(value)))
        except ValueError:
            raise MotionkitError(f"bad --ip-scale value {spec!r}: give FRAME:SCALE, e.g. 0:0.2 then 15:0.8") from None
    return IPAdapterPlan(path, scale, str(encoder), tuple(keyed_images), tuple(keyed_scales))
