"""Models loaded once and kept between requests.

Bases (vae, text encoder, tokenizer, UNet) are kept by path, adapters by path, and the one live
``MotionPipeline`` by (base, adapter). Switching the adapter re-uses the loaded base: the old adapter is
ejected from the UNet and the new one injected (no weights copied). Switching MotionLoRAs only
re-weights them when the files are the same, otherwise takes them off the adapter and puts the new ones
on; image LoRAs on the base are handled alike (peft adapters on the UNet and text encoder, deleted when
the set changes). Control models (a SparseCtrl encoder or a ControlNet) are kept by path, at most
``max_controls`` of them, and set as the pipeline's ``controlnet`` component on every request (``None``
when the request has none), so one request's control never reaches the next. One pipeline samples at a
time: callers hold ``lock`` from ``pipeline()`` to the end of sampling.
"""

from __future__ import annotations

import gc
import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from motionkit.errors import LayoutMismatchError, MotionkitError


class ModelCache:
    """Keeps up to ``max_bases`` base models and ``max_adapters`` adapters in memory on one device."""

    def __init__(
        self,
        device: str | None = None,
        dtype: str | None = None,
        attention_backend: str = "auto",
        max_bases: int = 1,
        max_adapters: int = 3,
        max_controls: int = 1,
    ):
        from motionkit.pipeline.build import device_and_dtype

        self.device, self.dtype = device_and_dtype(device, dtype)
        self.attention_backend = attention_backend
        self.max_bases, self.max_adapters = max(1, max_bases), max(1, max_adapters)
        self.max_controls = max(1, max_controls)
        self.lock = threading.Lock()
        self.loads: Counter[str] = Counter()  # "base" / "adapter" / "control" / "pipeline" -> times built (reuse is visible)
        self._bases: OrderedDict[Path, dict[str, Any]] = OrderedDict()
        self._adapters: OrderedDict[Path, Any] = OrderedDict()
        self._controls: OrderedDict[tuple[Path, str], Any] = OrderedDict()
        self._pipe: Any = None
        self._pipe_key: tuple[Path, Path] | None = None
        self._loras: tuple[tuple[Path, float], ...] = ()
        self._image_loras: tuple[tuple[Path, float], ...] = ()

    def pipeline(
        self,
        base: Path,
        adapter: Path,
        loras: Sequence[tuple[Path, float]] = (),
        scheduler: str = "ddim",
        image_loras: Sequence[tuple[Path, float]] = (),
        control: tuple[Path, str] | None = None,
    ) -> Any:
        """The pipeline for ``base`` + ``adapter`` with exactly ``loras`` (MotionLoRAs) and ``image_loras``
        applied, ``scheduler`` set and ``control`` (path, ``"encoder"`` or ``"controlnet"``) as its control
        model, or none."""
        from motionkit.pipeline.build import assemble_pipeline
        from motionkit.pipeline.motion_pipeline import pipeline_family
        from motionkit.pipeline.schedulers import make_scheduler

        if self._pipe_key != (base, adapter):
            self._drop_pipe()
            components = self._base(base)
            motion = self._adapter(adapter, components)
            self._pipe = assemble_pipeline(components, motion, scheduler, self.attention_backend)
            self._pipe_key = (base, adapter)
            self.loads["pipeline"] += 1
        self._set_loras(loras)
        self._set_image_loras(image_loras)
        self._set_control(control)
        # A fresh scheduler per request: schedulers keep per-run state (step index, begin index).
        base_config = self._bases[base]["scheduler"].config
        self._pipe.scheduler = make_scheduler(scheduler, base_config, family=pipeline_family(self._pipe.unet))
        return self._pipe

    # -- pieces -----------------------------------------------------------------------------------

    def _base(self, path: Path) -> dict[str, Any]:
        from motionkit.pipeline.build import quiet_loading
        from motionkit.pipeline.loading import load_base

        if path in self._bases:
            self._bases.move_to_end(path)
            return self._bases[path]
        while len(self._bases) >= self.max_bases:
            self._bases.popitem(last=False)
            self._adapters.clear()  # adapters were moved to the dropped base's device/dtype; cheap to reload
            self._free_memory()
        with quiet_loading():
            components = load_base(path, dtype=self.dtype, device=self.device)
        self._bases[path] = components
        self.loads["base"] += 1
        return components

    def _adapter(self, path: Path, components: dict[str, Any]) -> Any:
        from motionkit.injection import check_fits
        from motionkit.pipeline.loading import base_family, load_adapter_for

        if path in self._adapters:
            self._adapters.move_to_end(path)
            adapter = self._adapters[path]
            try:
                check_fits(components["unet"], adapter)
            except LayoutMismatchError as err:
                raise LayoutMismatchError(f"{path}: this adapter does not fit the {base_family(components)} base ({err})") from None
            return adapter
        while len(self._adapters) >= self.max_adapters:
            self._adapters.popitem(last=False)
        adapter = load_adapter_for(components, path)
        self._adapters[path] = adapter
        self.loads["adapter"] += 1
        return adapter

    def _control(self, key: tuple[Path, str]) -> Any:
        from diffusers import SparseControlNetModel

        from motionkit.formats import load_control_model
        from motionkit.models_folder import KINDS

        if key in self._controls:
            self._controls.move_to_end(key)
            return self._controls[key]
        while len(self._controls) >= self.max_controls:
            self._controls.popitem(last=False)
            if self._pipe is not None:
                self._pipe.register_modules(controlnet=None)  # the pipeline must not keep the dropped model alive
            self._free_memory()
        path, kind = key
        model = load_control_model(path, torch_dtype=self.dtype)
        if isinstance(model, SparseControlNetModel) != (kind == "encoder"):
            # Said in the models folder's terms: where the file belongs, not which CLI flag takes it.
            right = "controlnet" if kind == "encoder" else "encoder"
            what = {"encoder": "SparseCtrl encoder", "controlnet": "ControlNet"}
            raise MotionkitError(f"{path} is a {what[right]}, not a {what[kind]}: move it to {KINDS[right][0]}/")
        model = model.to(self.device)
        self._controls[key] = model
        self.loads["control"] += 1
        return model

    def _set_control(self, control: tuple[Path, str] | None) -> None:
        from motionkit.pipeline.control import check_control_fits
        from motionkit.pipeline.motion_pipeline import pipeline_family

        model = None
        if control is not None:
            model = self._control((Path(control[0]), control[1]))
            check_control_fits(model, self._pipe.unet, pipeline_family(self._pipe.unet))
        if self._pipe.controlnet is not model:
            self._pipe.register_modules(controlnet=model)

    def _set_loras(self, loras: Sequence[tuple[Path, float]]) -> None:
        from motionkit.formats import apply_motion_lora, remove_motion_lora, set_motion_lora_scale

        wanted = tuple((Path(path), float(scale)) for path, scale in loras)
        if wanted == self._loras:
            return
        adapter = self._pipe.adapter
        if [p for p, _ in wanted] == [p for p, _ in self._loras]:
            for index, (_, scale) in enumerate(wanted):
                set_motion_lora_scale(adapter, f"lora_{index}", scale)
        else:
            self._clear_loras()
            try:
                for index, (path, scale) in enumerate(wanted):
                    apply_motion_lora(adapter, path, scale, name=f"lora_{index}")
            except Exception:
                # A LoRA that does not fit must not leave half a set applied to the next request.
                remove_motion_lora(self._pipe.adapter)
                raise
        self._loras = wanted

    def _set_image_loras(self, loras: Sequence[tuple[Path, float]]) -> None:
        from motionkit.pipeline.lora import apply_loras, lora_adapter_names, remove_loras

        wanted = tuple((Path(path), float(scale)) for path, scale in loras)
        if wanted == self._image_loras:
            return
        # A changed set is rebuilt: image LoRAs are small, and peft keys them by name and position.
        self._clear_image_loras()
        try:
            if wanted:
                apply_loras(self._pipe, wanted)
        except Exception:
            remove_loras(self._pipe, lora_adapter_names(wanted))  # none half-applied for the next request
            raise
        self._image_loras = wanted

    def _clear_image_loras(self) -> None:
        from motionkit.pipeline.lora import lora_adapter_names, remove_loras

        if self._pipe is not None and self._image_loras:
            remove_loras(self._pipe, lora_adapter_names(self._image_loras))
        self._image_loras = ()

    def _clear_loras(self) -> None:
        from motionkit.formats import remove_motion_lora

        if self._pipe is not None and self._loras:
            remove_motion_lora(self._pipe.adapter)
        self._loras = ()

    def _drop_pipe(self) -> None:
        """Take the LoRAs off the live adapter and eject it, so the cached base UNet and adapter are clean."""
        if self._pipe is None:
            return
        self._clear_loras()
        self._clear_image_loras()
        self._pipe.eject()
        self._pipe, self._pipe_key = None, None

    def _free_memory(self) -> None:
        gc.collect()
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()

    def clear(self) -> None:
        """Forget every model (frees their memory once nothing else holds them)."""
        with self.lock:
            self._drop_pipe()
            self._bases.clear()
            self._adapters.clear()
            self._controls.clear()
            self._free_memory()
