"""Build a model without initialising its weights, then give it a state dict strictly.

Used for every model motionkit builds from a file with a known config (base UNets and VAEs, ControlNet
and SparseCtrl encoders): parameters start on the meta device, so nothing is initialised only to be
overwritten and a full-size model costs its weights once in memory.
"""

from __future__ import annotations

from typing import Any

import torch

from motionkit.errors import FormatError


def empty_model(cls: type, config: Any) -> torch.nn.Module:
    """A model with parameters on the meta device (filled by ``load_into``); buffers stay real."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        # diffusers models take a config dict, transformers models a config object.
        return cls.from_config(config) if isinstance(config, dict) else cls(config)


def _few(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def load_into(
    model: torch.nn.Module, state_dict: dict[str, torch.Tensor], where: str, fix: str, *, allow_extra: bool = True
) -> None:
    """Load weights into a model built by ``empty_model``: every parameter and buffer must be present.

    With ``allow_extra`` keys the model lacks are dropped: checkpoints carry what a config leaves out
    (position_ids buffers, SD 2's unused last text layer, training leftovers), while a wrong config still
    shows as missing or mis-sized weights. ``fix`` ends every error message.
    """
    expected = set(model.state_dict())
    missing = sorted(expected - set(state_dict))
    if missing:
        raise FormatError(
            f"{where}: the checkpoint lacks {len(missing)} weights ({_few(missing)}): the file is incomplete or not "
            f"of this family; {fix}"
        )
    extra = sorted(set(state_dict) - expected)
    if extra and not allow_extra:
        raise FormatError(f"{where}: {len(extra)} weights fit nowhere in the model ({_few(extra)}): {fix}")
    try:
        model.load_state_dict({k: state_dict[k] for k in expected}, strict=True, assign=True)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
        detail = lines[0] if lines else str(err).splitlines()[0]
        raise FormatError(f"{where}: weights do not fit the config ({detail}): {fix}") from None
