"""Clips paired with per-frame control maps (depth, edges, ...) for ControlNet training.

A control map is a video beside the clip, in its own folder, with the clip's file stem and frame count
(``videos/clip_00001.mp4`` pairs with ``maps/depth/clip_00001.mp4``). Each item decodes the clip's frames
the wrapped :class:`VideoClipDataset` plans (start, stride, size, flip) and the same frames of the map,
so clip and map stay aligned frame by frame and pixel by pixel.

A clip without a map, a map that cannot be decoded, or one whose frame count differs from its clip's, is
skipped as the dataset skips unreadable clips (a warning, then the next item). The first pair is checked
when the dataset is built: a map folder that does not belong to the clips is refused at once.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from motionkit.data.datasets import SKIPPABLE_ERRORS, ClipPlan, VideoClipDataset
from motionkit.errors import FormatError, MotionkitError

logger = logging.getLogger(__name__)

__all__ = ["ControlMapDataset"]


class ControlMapDataset(Dataset):
    """Items of ``clips`` with their control maps: ``pixel_values`` ``[F, 3, H, W]`` in [-1, 1] (as the clip
    dataset gives them) and ``control`` ``[F, 3, H, W]`` in [0, 1] (what ControlNet pipelines feed)."""

    def __init__(self, clips: VideoClipDataset, control_dir: str | os.PathLike[str]) -> None:
        from motionkit.data.curate import discover_videos

        self.clips = clips
        self.control_dir = Path(control_dir)
        if not self.control_dir.is_dir():
            raise MotionkitError(
                f"{self.control_dir}: no such control map folder: set encoder.control_dir to the folder of map videos"
            )
        self.maps = {path.stem: path for _, path in discover_videos([self.control_dir])}
        stems = [Path(source.path).stem for source in clips.sources]
        paired = [i for i, stem in enumerate(stems) if stem in self.maps]
        if not paired:
            example = f"{stems[0]}.mp4" if stems else "clip.mp4"
            raise MotionkitError(
                f"{self.control_dir}: no control map has the name of a clip (e.g. {example}): render the maps or "
                "point encoder.control_dir at the folder that holds them"
            )
        if len(paired) < len(stems):
            logger.warning(
                "%s: %d of %d clips have no control map; they are skipped", self.control_dir, len(stems) - len(paired), len(stems)
            )
        self._frames: dict[str, int] = {}  # probed frame counts, per path (per worker process)
        self._check_first_pair(clips.sources[paired[0]].path, self.maps[stems[paired[0]]])

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        self.clips.set_epoch(epoch)

    @property
    def skipped(self) -> int:
        return self.clips.skipped

    def map_path(self, clip_path: str) -> Path:
        """The control map of the clip at ``clip_path``; ``FileNotFoundError`` when it has none."""
        path = self.maps.get(Path(clip_path).stem)
        if path is None:
            raise FileNotFoundError(f"no control map {Path(clip_path).stem}.* under {self.control_dir}")
        return path

    def _frame_count(self, path: str | Path) -> int:
        from motionkit.video_io import probe_video

        key = str(path)
        if key not in self._frames:
            self._frames[key] = probe_video(path).frames
        return self._frames[key]

    def _check_first_pair(self, clip_path: str, map_path: Path) -> None:
        """Refuse a map folder whose first pair differs in frame count: the maps are of other clips. An
        unreadable first file is left to the skipping at load time."""
        try:
            clip_frames, map_frames = self._frame_count(clip_path), self._frame_count(map_path)
        except SKIPPABLE_ERRORS:
            return
        if clip_frames != map_frames:
            raise MotionkitError(
                f"{map_path} has {map_frames} frames but its clip {clip_path} has {clip_frames}: the control maps "
                "do not belong to these clips; re-render them from the same clips"
            )

    def _check_frames(self, clip_path: str, map_path: Path) -> None:
        clip_frames, map_frames = self._frame_count(clip_path), self._frame_count(map_path)
        if clip_frames != map_frames:
            raise FormatError(f"{map_path} has {map_frames} frames, its clip {clip_path} has {clip_frames}")

    def load(self, plan: ClipPlan) -> tuple[torch.Tensor, torch.Tensor]:
        """A planned clip and the same frames of its map, cut, resized and flipped alike."""
        from motionkit.data.decode import decode_clip

        map_path = self.map_path(plan.path)
        self._check_frames(plan.path, map_path)
        pixels = self.clips.load(plan)
        control = decode_clip(map_path, plan.indices, size=plan.size, flip=plan.flip, output="tensor")
        return pixels, (control + 1.0) / 2.0

    def __getitem__(self, index: int) -> dict[str, Any]:
        plan, (pixels, control) = self.clips.sample(index, self.load)
        return {"pixel_values": pixels, "control": control, "prompt": plan.prompt, "path": plan.path}
