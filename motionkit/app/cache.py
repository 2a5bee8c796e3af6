"""Models loaded once and kept between requests.

Bases (vae, text encoder, tokenizer, UNet) are kept by path, adapters by path, and the one live
``MotionPipeline`` by (base, adapter). Switching the adapter re-uses the loaded base: the old adapter is
ejected from the UNet and the new one injected (no weights copied). Switching MotionLoRAs only
re-weights them when the files are the same, otherwise takes them off the adapter and puts the new ones
on; image LoRAs on the base are handled alike (peft adapters on the UNet and text encoder, deleted when
the set changes). Control models (a SparseCtrl encoder or a ControlNet) are kept by path, at most
``max_controls`` of them, and set as the pipeline's ``controlnet`` component on every request (``None``
when the request has none), so one request's control never reaches the next. An IP-Adapter (with its
CLIP image encoder) is loaded into the live pipeline when a request asks for it, re-scaled when the next
asks for the same one, and unloaded when a request has none. Memory options are set on every request:
VAE slicing and tiling are switched on or off; model offload (CUDA) installs diffusers' hooks and is
undone by removing them; sequential offload moves weights into hooks for good, so turning it on or off,
or changing any model while it is on, rebuilds the pipeline from fresh loads. One pipeline samples at a
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
        self._ip_adapter: tuple[Path, Path] | None = None  # (file, image encoder) loaded into the live pipeline
        self._offload: tuple[str, Any] | None = None  # (mode, what it was installed for) on the live pipeline

    def pipeline(
        self,
        base: Path,
        adapter: Path,
        loras: Sequence[tuple[Path, float]] = (),
        scheduler: str = "ddim",
        image_loras: Sequence[tuple[Path, float]] = (),
        control: tuple[Path, str] | None = None,
        ip_adapter: tuple[Path, Path, float] | None = None,
        offload: str | None = None,
        vae_slicing: bool = False,
        vae_tiling: bool = False,
    ) -> Any:
        """The pipeline for ``base`` + ``adapter`` with exactly ``loras`` (MotionLoRAs) and ``image_loras``
        applied, ``scheduler`` set, ``control`` (path, ``"encoder"`` or ``"controlnet"``) as its control
        model or none, ``ip_adapter`` (file, image encoder folder, scale) loaded or none, and the memory
        options ``offload`` (None, ``"model"`` or ``"sequential"``), ``vae_slicing`` and ``vae_tiling``."""
        from motionkit.pipeline.build import assemble_pipeline
        from motionkit.pipeline.motion_pipeline import pipeline_family
        from motionkit.pipeline.schedulers import make_scheduler

        wanted = (base, adapter, tuple(loras), tuple(image_loras), control, ip_adapter[:2] if ip_adapter else None)
        if self._offload is not None and self._offload[0] == "sequential" and self._offload != (offload, wanted):
            self._clear()  # sequential offload cannot be undone in place: start again from the files
        elif offload != "model":
            self._undo_model_offload()
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
        self._set_ip_adapter(ip_adapter)
        # A fresh scheduler per request: schedulers keep per-run state (step index, begin index).
        base_config = self._bases[base]["scheduler"].config
        self._pipe.scheduler = make_scheduler(scheduler, base_config, family=pipeline_family(self._pipe.unet))
        self._set_memory(offload, wanted, vae_slicing, vae_tiling)
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
            model.to(self.device)  # model offload may have left it in main memory; offload moves it again if on
        if self._pipe.controlnet is not model:
            self._pipe.register_modules(controlnet=model)

    def _set_ip_adapter(self, ip_adapter: tuple[Path, Path, float] | None) -> None:
        from motionkit.pipeline.ip_adapter import load_ip_adapters

        wanted = (Path(ip_adapter[0]), Path(ip_adapter[1])) if ip_adapter else None
        if wanted != self._ip_adapter:
            self._clear_ip_adapter()
            if wanted is not None:
                try:
                    load_ip_adapters(self._pipe, wanted[0], wanted[1], float(ip_adapter[2]))
                except Exception:
                    if self._pipe.image_encoder is not None:  # half-loaded: the next request must not see it
                        self._pipe.unload_ip_adapter()
                    raise
                self._ip_adapter = wanted
                self.loads["ip_adapter"] += 1
        if ip_adapter is not None:
            self._pipe.set_ip_adapter_scale(float(ip_adapter[2]))

    def _clear_ip_adapter(self) -> None:
        if self._pipe is not None and self._ip_adapter is not None:
            # diffusers' unload puts plain attention processors back and drops the image encoder.
            self._pipe.unload_ip_adapter()
        self._ip_adapter = None

    def _set_memory(self, offload: str | None, wanted: Any, vae_slicing: bool, vae_tiling: bool) -> None:
        from motionkit.pipeline.memory import enable_offload

        vae = self._pipe.vae
        vae.enable_slicing() if vae_slicing else vae.disable_slicing()
        vae.enable_tiling() if vae_tiling else vae.disable_tiling()
        if offload == "model" or (offload == "sequential" and self._offload is None):
            # Model offload is re-installed every request: its hooks cover the components of this request.
            enable_offload(self._pipe, offload, self.device)
            self._offload = (offload, wanted)

    def _undo_model_offload(self) -> None:
        """Take model offload's hooks off the live pipeline and bring it back onto the device."""
        if self._offload is not None:
            self._pipe.remove_all_hooks()
            self._pipe.to(self.device)
            self._offload = None

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
        self._undo_model_offload()
        self._clear_loras()
        self._clear_image_loras()
        self._clear_ip_adapter()
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
            self._clear()

    def _clear(self) -> None:
        if self._offload is not None and self._offload[0] == "sequential":
            # Its weights live in hooks now: nothing of this pipeline is put back, it is dropped whole.
            self._pipe, self._pipe_key, self._offload = None, None, None
            self._loras, self._image_loras, self._ip_adapter = (), (), None
        self._drop_pipe()
        self._bases.clear()
        self._adapters.clear()
        self._controls.clear()
        self._free_memory()
