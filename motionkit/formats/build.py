"""Building a ``MotionAdapter`` from converted weights, after checking the weights are usable numbers.

``load_adapter`` builds through here, and ``detect_format`` too (on the meta device's terms: the tensors are
assigned, not copied), so ``motionkit inspect`` refuses exactly what loading refuses.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from motionkit.errors import FormatError, MotionkitError

# What a trained adapter's weights are stored as; integer, boolean and 8-bit float tensors are not weights
# motionkit can run (fp8 needs scales the layouts do not carry).
WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_weights(state_dict: Mapping[str, Any], where: str) -> None:
    """Refuse, in one line naming the first bad tensor, weights of a dtype motionkit cannot run or holding
    NaN or infinite values (which sample an all-black or garbage video)."""
    for key, tensor in state_dict.items():
        if isinstance(tensor, torch.Tensor) and tensor.dtype not in WEIGHT_DTYPES:
            kind = str(tensor.dtype).replace("torch.", "")
            raise FormatError(
                f"{where}: tensor {key!r} is {kind}, not float32, float16 or bfloat16 weights: "
                "export the adapter again in one of those"
            )
    for key, tensor in state_dict.items():
        if isinstance(tensor, torch.Tensor) and not tensor.is_meta and not bool(torch.isfinite(tensor).all()):
            raise FormatError(
                f"{where}: tensor {key!r} holds NaN or infinite values (a diverged or damaged checkpoint): "
                "use an earlier checkpoint or export it again"
            )


def _few(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(repr(k) for k in sorted(keys)[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")


def build_adapter(config: dict[str, Any], state_dict: dict[str, torch.Tensor], where: str) -> Any:
    """An adapter holding exactly ``state_dict`` (strict: every key present, none left over).

    Built on the meta device and given the loaded tensors directly, so nothing is initialised only to be
    overwritten and a full-size adapter costs its weights once in memory.
    """
    from motionkit.adapter import MotionAdapter
    from motionkit.modules.position import sinusoidal_table
    from motionkit.modules.temporal_transformer import TemporalTransformer

    check_weights(state_dict, where)
    try:
        with torch.device("meta"):
            adapter = MotionAdapter(**config)
    except MotionkitError as err:
        raise FormatError(f"{where}: {err}") from None
    try:
        result = adapter.load_state_dict(state_dict, strict=False, assign=True)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
        detail = lines[0] if lines else str(err).splitlines()[0]
        raise FormatError(f"{where}: weights do not fit the adapter config ({detail}): check the overrides") from None
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"missing {len(result.missing_keys)} ({_few(result.missing_keys)})")
        if result.unexpected_keys:
            parts.append(f"unexpected {len(result.unexpected_keys)} ({_few(result.unexpected_keys)})")
        raise FormatError(f"{where}: weights do not match the adapter layout: {'; '.join(parts)}: check the overrides")
    # Position tables are never stored; rebuild them on the device the weights landed on.
    for module in adapter.modules():
        if isinstance(module, TemporalTransformer):
            length, dim = module.pos_table.shape
            module.pos_table = sinusoidal_table(length, dim)
    leftover = [name for name, t in [*adapter.named_parameters(), *adapter.named_buffers()] if t.is_meta]
    if leftover:
        raise FormatError(f"{where}: no weights for {_few(leftover)}: the checkpoint is incomplete")
    return adapter.eval()
