"""WebDataset tar shards of curated clips, with an index for exact streaming resume.

``motionkit shard MANIFEST --out DIR`` writes ``DIR/shard-00000.tar, ...``: plain tar files in
WebDataset's layout (consecutive members sharing a key: ``000000042.mp4``, ``000000042.json``,
``000000042.txt``), so ``webdataset.WebDataset`` and any tar tool read them. Beside each tar a
``shard-00000.json`` lists its samples with the byte offset and size of every member and what
sampling needs (frames, fps, size); ``DIR/index.json`` lists the shards and what they hold.

Sample members:
- ``video`` shards: ``.mp4`` (the clip's frames; a clip that spans its whole source file is stored as
  the file's own bytes, a cut one re-encoded as H.264), ``.json`` (the manifest row), ``.txt`` (caption);
- ``latents`` shards: ``.safetensors`` (one tensor ``latents`` ``[C, F, h, w]``: the VAE posterior mean
  of the clip's centred ``n_frames`` frames ``stride`` apart at ``size``, scaled, as the trainer feeds
  them), ``.json``, ``.txt``: training from them skips decoding and the VAE.

Tars and indexes are written atomically; tar headers carry no time or owner, so the same manifest gives
the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motionkit.errors import MotionkitError

__all__ = ["INDEX_NAME", "MemberBytes", "ShardIndex", "ShardSample", "read_member", "write_shards"]

INDEX_NAME = "index.json"
FORMAT = "motionkit-shards"
VERSION = 1
KINDS = ("video", "latents")


@dataclass(frozen=True)
class ShardSample:
    """One sample of a shard: its key, ``{extension: (offset, size)}`` of its members in the tar, and the
    clip's frame count, fps and size."""

    key: str
    members: dict[str, tuple[int, int]]
    frames: int
    fps: float
    width: int
    height: int


@dataclass
class ShardIndex:
    """``index.json`` of a shard folder; per-shard sample lists are read when first needed."""

    root: Path
    kind: str
    shards: list[dict[str, Any]]  # {"name", "samples", "sha256"}
    latents: dict[str, Any] | None = None  # n_frames, stride, size of a latents shard set
    fingerprint: str = ""
    _samples: dict[int, list[ShardSample]] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> ShardIndex:
        root = Path(root)
        path = root / INDEX_NAME
        if not path.is_file():
            raise MotionkitError(f"{root}: no {INDEX_NAME}; write shards with 'motionkit shard MANIFEST --out {root}'")
        raw = path.read_bytes()
        try:
            data = json.loads(raw)
            if data.get("format") != FORMAT:
                raise ValueError(f"format is {data.get('format')!r}")
            if data.get("version") != VERSION:
                raise ValueError(f"version {data.get('version')} (this motionkit reads {VERSION})")
            kind, shards = data["kind"], data["shards"]
        except (ValueError, KeyError, AttributeError) as err:
            raise MotionkitError(f"{path}: not a motionkit shard index ({err}); rewrite it with 'motionkit shard'") from None
        if kind not in KINDS:
            raise MotionkitError(f"{path}: unknown shard kind {kind!r}")
        return cls(root, kind, shards, data.get("latents"), hashlib.sha256(raw).hexdigest())

    @property
    def sample_counts(self) -> list[int]:
        return [int(s["samples"]) for s in self.shards]

    def samples(self, shard: int) -> list[ShardSample]:
        if shard not in self._samples:
            name = self.shards[shard]["name"]
            path = self.root / (Path(name).stem + ".json")
            try:
                entries = json.loads(path.read_text(encoding="utf-8"))
                samples = [
                    ShardSample(
                        e["key"], {k: (int(v[0]), int(v[1])) for k, v in e["members"].items()},
                        int(e["frames"]), float(e["fps"]), int(e["width"]), int(e["height"]),
                    )
                    for e in entries
                ]
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise MotionkitError(f"{path}: unreadable shard index ({err}); rewrite the shards") from None
            if len(samples) != self.sample_counts[shard]:
                raise MotionkitError(f"{path}: lists {len(samples)} samples, {INDEX_NAME} says {self.sample_counts[shard]}")
            self._samples[shard] = samples
        return self._samples[shard]

    def tar_path(self, shard: int) -> Path:
        return self.root / self.shards[shard]["name"]


class MemberBytes(io.BytesIO):
    """A tar member held in memory; prints as ``shard.tar/member`` in error messages."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name

    def __str__(self) -> str:
        return self.name


def read_member(index: ShardIndex, shard: int, sample: ShardSample, extension: str) -> MemberBytes:
    """The bytes of one member, read at its recorded offset (no tar parsing)."""
    if extension not in sample.members:
        raise MotionkitError(f"{index.tar_path(shard)}: sample {sample.key} has no .{extension} member")
    offset, size = sample.members[extension]
    with open(index.tar_path(shard), "rb") as handle:
        handle.seek(offset)
        data = handle.read(size)
    if len(data) != size:
        raise MotionkitError(f"{index.tar_path(shard)}: ends inside sample {sample.key}; rewrite the shard")
    return MemberBytes(data, f"{index.shards[shard]['name']}/{sample.key}.{extension}")


# --------------------------------------------------------------------------- writing


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> tuple[int, int]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0  # reproducible bytes
    header = len(info.tobuf(tar.format, tar.encoding, tar.errors))
    start = tar.offset
    tar.addfile(info, io.BytesIO(data))
    return start + header, info.size


def _clip_mp4(clip: Any, *, crf: int) -> bytes:
    """The clip's frames as mp4 bytes: the source file itself when the clip spans all of it."""
    from motionkit.data.decode import decode_clip
    from motionkit.video_io import probe_video, write_video

    info = probe_video(clip.path)
    if clip.start_frame == 0 and clip.end_frame >= info.frames and Path(clip.path).suffix.lower() == ".mp4":
        return Path(clip.path).read_bytes()
    frames = decode_clip(clip.path, list(range(clip.start_frame, clip.end_frame)))
    with tempfile.TemporaryDirectory() as tmp:
        target = write_video(frames, Path(tmp) / "clip.mp4", fps=clip.fps, crf=crf)
        return target.read_bytes()


def _latents_bytes(clip: Any, encode: Callable[[Any], Any], spec: dict[str, Any]) -> tuple[bytes, int]:
    import torch
    from safetensors.torch import save

    from motionkit.data.decode import decode_clip, indices_by_stride

    indices = indices_by_stride(clip.num_frames, spec["n_frames"], spec["stride"], start=clip.start_frame, random_start=False)
    pixels = decode_clip(clip.path, indices, size=(spec["size"], spec["size"]), output="tensor")
    with torch.no_grad():
        latents = encode(pixels).detach().to("cpu", torch.float32).contiguous()
    return save({"latents": latents}, metadata={"indices": json.dumps(indices)}), len(indices)


def write_shards(
    manifest: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    clips_per_shard: int = 1000,
    encode: Callable[[Any], Any] | None = None,
    latents: dict[str, Any] | None = None,
    crf: int = 18,
    progress: bool = True,
) -> ShardIndex:
    """Write the kept clips of ``manifest`` as tar shards of ``clips_per_shard`` samples into ``out``.

    With ``encode`` (pixels ``[F, 3, H, W]`` in [-1, 1] -> latents) the shards are ``latents`` shards of
    ``latents = {"n_frames", "stride", "size"}`` clips; otherwise ``video`` shards."""
    from tqdm import tqdm

    from motionkit.data.manifest import ManifestRow, read_rows
    from motionkit.utils.atomic import atomic_path, atomic_write

    if clips_per_shard < 1:
        raise MotionkitError(f"--clips-per-shard must be >= 1, got {clips_per_shard}")
    if (encode is None) != (latents is None):
        raise ValueError("give encode and latents together (latents shards) or neither (video shards)")
    kind = "latents" if encode is not None else "video"
    rows: list[ManifestRow] = [r for r in read_rows(manifest) if r.keep]
    if not rows:
        raise MotionkitError(f"{manifest}: no kept clips to shard")
    root = Path(out)
    if root.is_file():
        raise MotionkitError(f"{root}: is a file; --out takes a folder for the shards")
    root.mkdir(parents=True, exist_ok=True)
    if (root / INDEX_NAME).exists():
        raise MotionkitError(f"{root}: already holds shards ({INDEX_NAME}); pick a new --out or delete it")

    shards: list[dict[str, Any]] = []
    groups = [rows[i : i + clips_per_shard] for i in range(0, len(rows), clips_per_shard)]
    with tqdm(total=len(rows), unit="clip", desc="shard", disable=not progress, dynamic_ncols=True) as bar:
        for number, group in enumerate(groups):
            name = f"shard-{number:05d}.tar"
            entries = []
            with atomic_path(root / name) as tmp:
                with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
                    for offset, row in enumerate(group):
                        clip = row.clip
                        key = f"{number * clips_per_shard + offset:09d}"
                        members: dict[str, tuple[int, int]] = {}
                        if kind == "video":
                            members["mp4"] = _add(tar, f"{key}.mp4", _clip_mp4(clip, crf=crf))
                            frames = clip.num_frames
                        else:
                            data, frames = _latents_bytes(clip, encode, latents)  # type: ignore[arg-type]
                            members["safetensors"] = _add(tar, f"{key}.safetensors", data)
                        record = {**row.to_dict(), "source_path": clip.path}
                        members["json"] = _add(tar, f"{key}.json", json.dumps(record, ensure_ascii=False).encode("utf-8"))
                        members["txt"] = _add(tar, f"{key}.txt", clip.caption.encode("utf-8"))
                        entries.append({
                            "key": key, "members": members, "frames": frames,
                            "fps": clip.fps, "width": clip.width, "height": clip.height,
                        })
                        bar.update(1)
            with atomic_write(root / f"shard-{number:05d}.json") as handle:
                json.dump(entries, handle)
            shards.append({"name": name, "samples": len(entries), "sha256": _sha256(root / name)})
    index = {"format": FORMAT, "version": VERSION, "kind": kind, "shards": shards, "latents": latents}
    with atomic_write(root / INDEX_NAME) as handle:
        json.dump(index, handle, indent=1)
    return ShardIndex.open(root)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def iter_shard_rows(root: str | os.PathLike[str]) -> Iterable[dict[str, Any]]:
    """The manifest rows stored in a shard folder, in shard order (their ``.json`` members)."""
    index = ShardIndex.open(root)
    for shard in range(len(index.shards)):
        for sample in index.samples(shard):
            yield json.loads(read_member(index, shard, sample, "json").getvalue())


def shard_files(root: str | os.PathLike[str]) -> Sequence[Path]:
    index = ShardIndex.open(root)
    return [index.tar_path(i) for i in range(len(index.shards))]
