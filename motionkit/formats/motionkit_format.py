"""motionkit's own files: a ``save_pretrained`` folder, or one ``.safetensors`` whose metadata carries the
whole config (``{"format": "motionkit", "config": "<json>"}``), so a single file is self-describing."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Mapping

from motionkit.errors import FormatError
from motionkit.formats.layout import Converted, complete_config, infer_layout

FORMAT_TAG = "motionkit"


def adapter_fields() -> set[str]:
    from motionkit.adapter import MotionAdapter

    return {name for name in inspect.signature(MotionAdapter.__init__).parameters if name != "self"}


def plain_config(adapter: Any) -> dict[str, Any]:
    """The adapter's init arguments as JSON-ready values."""
    fields = adapter_fields()
    out = {}
    for key, value in adapter.config.items():
        if key in fields:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def is_motionkit_config(config: Mapping[str, Any]) -> bool:
    return "temporal_norm" in config or ("layers_per_block" in config and "motion_layers_per_block" not in config)


def from_motionkit(state: dict[str, Any], config: Mapping[str, Any] | None) -> Converted:
    if config is None:
        # Internal-layout weights without a config: read the layout off the weights.
        return Converted(state, complete_config(infer_layout(state), {}, {"temporal_norm": "per_frame"}), FORMAT_TAG)
    fields = adapter_fields()
    unknown = sorted(k for k in config if k not in fields and not k.startswith("_"))
    if unknown:
        raise FormatError(
            f"the motionkit config names fields this version does not know ({', '.join(unknown[:4])}): upgrade motionkit"
        )
    clean = {k: v for k, v in config.items() if k in fields}
    return Converted(state, complete_config({}, clean, {}), FORMAT_TAG)


def read_metadata_config(metadata: Mapping[str, str], path: Path) -> dict[str, Any] | None:
    if metadata.get("format") != FORMAT_TAG:
        return None
    try:
        config = json.loads(metadata["config"])
    except (KeyError, json.JSONDecodeError):
        raise FormatError(f"{path}: motionkit file with a missing or broken config in its metadata: export it again") from None
    if not isinstance(config, dict):
        raise FormatError(f"{path}: motionkit file whose metadata config is not a mapping: export it again")
    return config


def save_motionkit(adapter: Any, path: str | Path) -> None:
    """A folder (``save_pretrained``) unless ``path`` ends in ``.safetensors``."""
    from motionkit.formats.safe_load import save_safetensors
    from motionkit.utils.atomic import atomic_path

    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        metadata = {"format": FORMAT_TAG, "config": json.dumps(plain_config(adapter))}
        save_safetensors(adapter.state_dict(), path, metadata)
        return
    if path.suffix:
        raise FormatError(
            f"{path}: motionkit adapters are saved as a folder or a single .safetensors file: drop the suffix or use .safetensors"
        )
    with atomic_path(path, is_dir=True) as tmp:
        adapter.save_pretrained(tmp, safe_serialization=True)
