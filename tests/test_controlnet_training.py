"""ControlNet training (``encoder.kind: controlnet``) on tiny models and a tiny rendered world with control
map videos written here: the data pairing, the model call against the sampling pipeline's, training that
touches only the ControlNet, bitwise resume, the export through ``load_control_model`` / ``MotionPipeline`` /
``motionkit animate``, one-line refusals; and the caption filter a MotionLoRA trains on."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from motionkit.errors import MotionkitError
from motionkit.train.config import DataConfig, EncoderConfig, LoRAConfig, TrainConfig
from motionkit.train.encoder_trainer import EncoderTrainer
from motionkit.train.trainer import Trainer
from tests.test_train import (  # noqa: F401
    FRAMES,
    SIZE,
    _interrupt_after,
    fresh_accelerate_state,
    reset_accelerate,
    tiny_base,
    tiny_config,
    write_base_folder,
)
from tests.test_train_recipe import _motion_adapter

CLIP_FRAMES = 6
EMBEDDING = (8, 8, 16, 16)  # three stride-2 steps: the tiny VAE's factor 8


def _index_maps(frames: int) -> np.ndarray:
    """A map video whose frame t is grey level 20 * (t + 1) on its left half, black on the right: decoded
    maps show which frames were taken and whether they were flipped."""
    maps = np.zeros((frames, SIZE, SIZE, 3), np.uint8)
    for t in range(frames):
        maps[t, :, : SIZE // 2] = 20 * (t + 1)
    return maps


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """``videos/clip_NNNNN.mp4`` (4 world clips of 6 frames, 32 px) and ``maps/index/`` of the same names."""
    from motionkit.data.world import write_world_dataset
    from motionkit.video_io import write_video

    root = write_world_dataset(tmp_path_factory.mktemp("world"), 4, frames=CLIP_FRAMES, size=SIZE, seed=3)
    for clip in sorted((root / "videos").glob("*.mp4")):
        write_video(_index_maps(CLIP_FRAMES), root / "maps" / "index" / clip.name, fps=8)
    return root


def _maps_folder(root: Path, name: str, frames: int = CLIP_FRAMES, skip: tuple[str, ...] = ()) -> Path:
    from motionkit.video_io import write_video

    folder = root / name
    for clip in sorted((root / "videos").glob("*.mp4")):
        if clip.stem not in skip:
            write_video(_index_maps(frames), folder / clip.name, fps=8)
    return folder


def controlnet_config(world: Path, tmp_path: Path, **changes) -> TrainConfig:
    encoder = EncoderConfig(
        enabled=True,
        kind="controlnet",
        motion_adapter=str(_motion_adapter(tmp_path / "motion")),
        control_dir=str(world / "maps" / "index"),
        conditioning_embedding_out_channels=EMBEDDING,
    )
    data = DataConfig(folder=str(world / "videos"), n_frames=FRAMES, stride=1, size=SIZE, flip_prob=0.5)
    return tiny_config(tmp_path / "run", encoder=encoder, data=data, **changes)


# -- data -----------------------------------------------------------------------------------------


def test_maps_take_the_clips_frames_crop_and_flip(world):
    from motionkit.data.control_maps import ControlMapDataset
    from motionkit.data.datasets import VideoClipDataset

    clips = VideoClipDataset.from_folder(world / "videos", n_frames=3, stride=2, size=(SIZE, SIZE), flip_prob=0.5, seed=1)
    dataset = ControlMapDataset(clips, world / "maps" / "index")
    flips = set()
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for i in range(len(dataset)):
            item, plan = dataset[i], clips.plan(i)
            assert item["pixel_values"].shape == item["control"].shape == (3, 3, SIZE, SIZE)
            assert 0.0 <= float(item["control"].min()) and float(item["control"].max()) <= 1.0
            bright, dark = item["control"][:, 0, :, 2], item["control"][:, 0, :, -3]
            if plan.flip:
                bright, dark = dark, bright
            levels = [round(float(b.mean()) * 255 / 20) - 1 for b in bright]
            assert levels == list(plan.indices) and float(dark.max()) < 0.05
            flips.add(plan.flip)
    assert flips == {True, False}


def test_missing_and_corrupt_maps_are_skipped_with_a_report(world, tmp_path, caplog):
    from motionkit.data.control_maps import ControlMapDataset
    from motionkit.data.datasets import VideoClipDataset

    stems = sorted(p.stem for p in (world / "videos").glob("*.mp4"))
    folder = _maps_folder(world, str(tmp_path / "maps"), skip=(stems[1],))
    (folder / f"{stems[2]}.mp4").write_bytes(b"not a video")
    clips = VideoClipDataset.from_folder(world / "videos", n_frames=FRAMES, stride=1, size=(SIZE, SIZE), seed=0)
    with caplog.at_level(logging.WARNING):
        dataset = ControlMapDataset(clips, folder)
        paths = [Path(dataset[i]["path"]).stem for i in range(len(dataset))]
    assert "1 of 4 clips have no control map" in caplog.text and "skipping unreadable clip" in caplog.text
    assert set(paths) == {stems[0], stems[3]} and dataset.skipped == 2


def test_bad_control_configs_are_refused_in_one_line(world, tmp_path):
    with pytest.raises(MotionkitError, match="needs encoder.control_dir"):
        EncoderConfig(enabled=True, kind="controlnet", motion_adapter="m")
    with pytest.raises(MotionkitError, match="kind controlnet only"):
        EncoderConfig(control_dir="maps")
    with pytest.raises(MotionkitError, match="encoder.kind 'canny'"):
        EncoderConfig(kind="canny")
    with pytest.raises(MotionkitError, match="positive integers"):
        EncoderConfig(conditioning_embedding_out_channels=(16, 0))
    with pytest.raises(MotionkitError, match="remove data.latent_cache"):
        controlnet_config(world, tmp_path).replace(data=DataConfig(folder="v", latent_cache="c"))

    def refusal(cfg: TrainConfig) -> str:
        reset_accelerate()
        with pytest.raises(MotionkitError) as err:
            EncoderTrainer(cfg, base=tiny_base()).setup()
        assert "\n" not in str(err.value)
        return str(err.value)

    cfg = controlnet_config(world, tmp_path)

    def encoder(**changes) -> TrainConfig:
        return cfg.replace(encoder=dataclasses.replace(cfg.encoder, **changes))

    assert "no such control map folder" in refusal(encoder(control_dir=str(tmp_path / "nowhere")))
    short = _maps_folder(world, str(tmp_path / "short"), frames=CLIP_FRAMES - 2)
    message = refusal(encoder(control_dir=str(short)))
    assert f"has {CLIP_FRAMES - 2} frames but its clip" in message and "re-render" in message
    message = refusal(encoder(conditioning_embedding_out_channels=(16, 32)))
    assert "shrinks control maps 2x but the VAE shrinks images 8x: give 4 widths" in message


def test_cli_refuses_a_controlnet_config_without_control_dir(tmp_path, capsys):
    from motionkit.cli import main

    (tmp_path / "train.yaml").write_text("encoder:\n  enabled: true\n  kind: controlnet\n  motion_adapter: m\n")
    assert main(["train", "--config", str(tmp_path / "train.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs encoder.control_dir" in err and len(err.splitlines()) == 1


# -- the model --------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["tiny-sd", "tiny-sdxl"])
def test_training_call_is_the_sampling_pipelines_call(family):
    """``controlnet_residuals`` (training) and ``ControlNetVideos.residuals`` (MotionPipeline) give the same
    residuals for the same latents, text (and SDXL's added conditioning) and maps."""
    from diffusers import ControlNetModel

    from motionkit.pipeline.control import ControlNetVideos
    from motionkit.tiny import randomize_, tiny_unet
    from motionkit.train.controlnet import controlnet_residuals

    unet = tiny_unet(family)
    net = randomize_(ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=EMBEDDING), seed=1, std=0.05)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, FRAMES, 4, 4, generator=generator)
    hidden = torch.randn(1, 77, unet.config.cross_attention_dim, generator=generator)
    control = torch.rand(FRAMES, 3, SIZE, SIZE, generator=generator)
    added = None
    if family == "tiny-sdxl":
        text = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        added = {"text_embeds": torch.randn(1, text, generator=generator), "time_ids": torch.rand(1, 6, generator=generator)}
    t = torch.tensor([321])
    with torch.no_grad():
        ours = controlnet_residuals(net, sample, t, hidden, control[None], conditioning_scale=0.7, added_cond_kwargs=added)
        theirs = ControlNetVideos(net, [control], [0.7], [0.0], [1.0], False).residuals(
            0, 1, sample, t, list(range(FRAMES)), hidden, added, False
        )
    assert len(ours["down_block_additional_residuals"]) == len(theirs["down_block_additional_residuals"])
    for a, b in zip(ours["down_block_additional_residuals"], theirs["down_block_additional_residuals"]):
        assert torch.equal(a, b)
    assert torch.equal(ours["mid_block_additional_residual"], theirs["mid_block_additional_residual"])
    assert ours["mid_block_additional_residual"].abs().sum() > 0


@pytest.mark.parametrize("zero_map", [True, False])
def test_fresh_controlnet_is_a_no_op_and_the_map_init_decides_what_reaches_it(world, tmp_path, zero_map):
    reset_accelerate()
    cfg = controlnet_config(world, tmp_path)
    cfg = cfg.replace(encoder=dataclasses.replace(cfg.encoder, zero_map_embedding=zero_map))
    trainer = EncoderTrainer(cfg, base=tiny_base()).setup()
    conv_out = trainer.encoder.controlnet_cond_embedding.conv_out.weight
    assert bool((conv_out == 0).all()) is zero_map
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, FRAMES, 4, 4, generator=generator)
    control = torch.rand(2, FRAMES, 3, SIZE, SIZE, generator=generator)
    t = torch.tensor([10, 900])
    hidden, _ = trainer.base.encode_prompts(["a ball", "a square"], SIZE, SIZE)
    with torch.no_grad():
        alone = trainer.motion_unet(latents, t, hidden, return_dict=False)[0]
        assert torch.equal(trainer.denoiser(latents, t, hidden, control), alone)  # zero output convs: no effect yet
        for block in [*trainer.encoder.controlnet_down_blocks, trainer.encoder.controlnet_mid_block]:
            block.weight.normal_(std=0.1)
        real = trainer.denoiser(latents, t, hidden, control)
        black = trainer.denoiser(latents, t, hidden, control * 0)
    assert not torch.allclose(real, alone)
    assert torch.equal(real, black) is zero_map  # the zero map embedding hides the map until it has trained


# -- training ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    """A 4-step ControlNet run, checkpointed every 2 steps, with the weights before and after."""
    tmp = tmp_path_factory.mktemp("trained")
    reset_accelerate()
    cfg = controlnet_config(world, tmp, max_steps=4, checkpoint_every=2, timestep_sampling="mixed", loss_weighting="min_snr")
    trainer = EncoderTrainer(cfg, base=tiny_base()).setup()
    before = {k: v.clone() for k, v in trainer.encoder.state_dict().items()}
    adapter = {k: v.clone() for k, v in trainer.adapter.state_dict().items()}
    result = trainer.train()
    reset_accelerate()
    return dict(trainer=trainer, result=result, before=before, adapter=adapter, config=cfg, tmp=tmp)


def test_controlnet_trains_only_its_own_weights(trained):
    from diffusers import ControlNetModel

    trainer, result = trained["trainer"], trained["result"]
    assert isinstance(trainer.encoder, ControlNetModel) and result.steps == 4
    assert all(np.isfinite(h["loss"]) for h in result.history)
    assert set(result.frozen_hashes) >= {"unet", "vae", "text_encoder", "adapter"}  # checked unchanged by _finish
    assert all(torch.equal(v, trainer.adapter.state_dict()[k]) for k, v in trained["adapter"].items())
    assert all(p.grad is None for p in trainer.base.unet.parameters())
    after = trainer.encoder.state_dict()
    changed = {k for k, v in trained["before"].items() if not torch.equal(v, after[k])}
    assert {"controlnet_cond_embedding.conv_out.weight", "controlnet_mid_block.weight"} <= changed
    assert tuple(trainer.encoder.config.conditioning_embedding_out_channels) == EMBEDDING


def test_controlnet_resume_equals_the_uninterrupted_run(trained, world, tmp_path, monkeypatch):
    cfg = trained["config"].replace(output_dir=str(tmp_path / "run"))
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "save_checkpoint", _interrupt_after(2))
        reset_accelerate()
        with pytest.raises(KeyboardInterrupt):
            EncoderTrainer(cfg, base=tiny_base()).train()
    reset_accelerate()
    resumed = EncoderTrainer(cfg.replace(resume_from="latest"), base=tiny_base())
    resumed.train()
    a, b = trained["trainer"].trainable_state(), resumed.trainable_state()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in trained["trainer"].history] == [h["loss"] for h in resumed.history]


def test_export_loads_as_a_controlnet_and_drives_motion_pipeline(trained, world):
    from diffusers import ControlNetModel

    from motionkit.formats import load_adapter, load_control_model
    from motionkit.pipeline.motion_pipeline import MotionPipeline

    folder = Path(trained["result"].exported["controlnet"])
    assert folder == Path(trained["config"].output_dir) / "controlnet"
    net = load_control_model(folder)
    assert isinstance(net, ControlNetModel)
    mine = trained["trainer"].encoder.state_dict()
    assert all(torch.equal(v, mine[k]) for k, v in net.state_dict().items())

    pipe = MotionPipeline.from_components(tiny_base(), load_adapter(trained["config"].encoder.motion_adapter), controlnet=net)
    pipe.set_progress_bar_config(disable=True)
    control_video = world / "maps" / "index" / "clip_00000.mp4"

    def sample(scale: float) -> np.ndarray:
        return pipe(
            "a red ball", num_frames=CLIP_FRAMES, height=SIZE, width=SIZE, num_inference_steps=2,
            conditioning_frames=str(control_video), controlnet_conditioning_scale=scale,
            generator=torch.Generator().manual_seed(0), output_type="np",
        ).frames[0]

    on, off = sample(1.0), sample(0.0)
    assert on.shape == (CLIP_FRAMES, SIZE, SIZE, 3) and np.isfinite(on).all()
    assert not np.array_equal(on, off)  # the trained ControlNet reaches the video


def test_export_runs_in_motionkit_animate(trained, world, tmp_path):
    from motionkit.cli import main
    from motionkit.video_io import read_video

    base = write_base_folder(tmp_path / "base")
    out = tmp_path / "video.mp4"
    code = main([
        "animate", "--base", str(base), "--adapter", trained["config"].encoder.motion_adapter,
        "--controlnet", f"{trained['result'].exported['controlnet']}:0.9",
        "--control-video", str(world / "maps" / "index" / "clip_00001.mp4"),
        "--prompt", "a red ball", "--frames", str(CLIP_FRAMES), "--width", "64", "--height", "64",
        "--steps", "2", "--seed", "1", "--out", str(out),
    ])
    assert code == 0 and read_video(out).shape == (CLIP_FRAMES, 64, 64, 3)  # maps resized to the video


# -- MotionLoRA on clips picked by caption -----------------------------------------------------------


def _captioned_videos(folder: Path) -> Path:
    from motionkit.data.synthetic import moving_pattern
    from motionkit.video_io import write_video

    folder.mkdir(parents=True, exist_ok=True)
    moves = ["camera zooming in", "camera zooming out", "static camera", "Camera Zooming In", "camera panning left"]
    for i, move in enumerate(moves):
        write_video(moving_pattern(FRAMES, SIZE, SIZE, speed=1.0 + i, hue=i % 3, seed=i), folder / f"clip{i}.mp4", fps=8)
        (folder / f"clip{i}.txt").write_text(f"a ball, {move}", encoding="utf-8")
    return folder


def test_caption_filter_keeps_matching_clips_and_refuses_none(tmp_path):
    from motionkit.data.datasets import VideoClipDataset

    folder = _captioned_videos(tmp_path / "videos")
    kept = VideoClipDataset.from_folder(folder, n_frames=FRAMES, caption_contains="zooming in")
    assert sorted(Path(s.path).name for s in kept.sources) == ["clip0.mp4", "clip3.mp4"]  # any case, not "zooming out"
    with pytest.raises(MotionkitError, match="no caption of the 5 clips contains 'dolly zoom'"):
        VideoClipDataset.from_folder(folder, caption_contains="dolly zoom")


def test_caption_remove_takes_the_move_words_out(tmp_path):
    from motionkit.data.datasets import VideoClipDataset, without_text

    assert without_text("a ball, camera zooming in", "camera zooming in") == "a ball"
    assert without_text("Camera Zooming In, a ball, clouds", "camera zooming in") == "a ball, clouds"
    assert without_text("a ball rolling left", "camera zooming in") == "a ball rolling left"
    folder = _captioned_videos(tmp_path / "videos")
    kept = VideoClipDataset.from_folder(folder, n_frames=FRAMES, caption_contains="zooming in",
                                        caption_remove="camera zooming in")
    assert [s.caption for s in kept.sources] == ["a ball", "a ball"]
    assert kept[0]["prompt"] == "a ball"
    with pytest.raises(MotionkitError, match="caption_remove is empty"):
        VideoClipDataset.from_folder(folder, caption_remove="  ")


@pytest.mark.parametrize(("fields", "message"), [
    ({"caption_contains": " "}, "data.caption_contains is empty"),
    ({"shards": "s", "caption_contains": "zoom"}, "shards are filtered when written"),
    ({"caption_remove": ""}, "data.caption_remove is empty"),
    ({"shards": "s", "caption_remove": "zoom"}, "shards keep the captions"),
])
def test_caption_keys_refuse_what_they_cannot_do(fields, message):
    with pytest.raises(MotionkitError, match=message):
        DataConfig(**fields)


def test_motion_lora_trains_on_the_captioned_subset(tmp_path):
    from motionkit.adapter import MotionAdapter
    from motionkit.formats import save_adapter
    from motionkit.tiny import randomize_, tiny_unet

    base_adapter = save_adapter(randomize_(MotionAdapter.from_unet(tiny_unet(), "animatediff-v2"), seed=3, std=0.05), tmp_path / "a")
    data = DataConfig(folder=str(_captioned_videos(tmp_path / "videos")), n_frames=FRAMES, stride=1, size=SIZE,
                      caption_contains="zooming in", caption_dropout=0.0)
    lora = LoRAConfig(enabled=True, rank=4, alpha=4, base_adapter=str(base_adapter))
    reset_accelerate()
    trainer = Trainer(tiny_config(tmp_path / "run", data=data, lora=lora, max_steps=2), base=tiny_base())
    result = trainer.train()
    assert len(trainer.dataset) == 2 and {"a ball, camera zooming in", "a ball, Camera Zooming In"} == {
        s.caption for s in trainer.dataset.sources
    }
    assert result.steps == 2 and Path(result.exported["motion_lora"]).is_file()


# -- the tiny family's configs ------------------------------------------------------------------------


def test_tiny_family_controlnet_and_zoom_lora_configs():
    root = Path(__file__).resolve().parent.parent
    folder = root / "examples" / "tiny_family"
    work = root / "motionkit-out" / "tiny-family"
    controlnet = TrainConfig.from_yaml(folder / "controlnet.yaml")
    assert controlnet.encoder.enabled and controlnet.encoder.kind == "controlnet"
    assert Path(controlnet.encoder.control_dir).resolve() == work / "data" / "natural" / "maps" / "depth"
    assert Path(controlnet.output_dir).resolve() == work / "controlnet"
    assert len(controlnet.encoder.conditioning_embedding_out_channels) == 3  # the tiny VAE's factor 4
    encoder = TrainConfig.from_yaml(folder / "encoder.yaml")
    assert (controlnet.max_steps, controlnet.batch_size, controlnet.data) == (encoder.max_steps, encoder.batch_size, encoder.data)
    zoom = TrainConfig.from_yaml(folder / "motion_lora_zoom.yaml")
    assert zoom.lora.enabled and zoom.data.caption_contains == "camera zooming in"
    assert (zoom.max_steps, zoom.batch_size) == (300, 4)
    assert Path(zoom.output_dir).resolve() == work / "motion_lora_zoom"
    assert Path(zoom.lora.base_adapter).resolve() == work / "motion" / "adapter"
    # The MotionLoRA that ships: against the adapter that ships, its move's words out of the captions.
    words = TrainConfig.from_yaml(folder / "motion_lora_zoom_words.yaml")
    assert words.lora.enabled and words.data.caption_contains == words.data.caption_remove == "camera zooming in"
    assert Path(words.lora.base_adapter).resolve() == work / "motion_high_noise" / "adapter"
    assert Path(words.output_dir).resolve() == work / "motion_lora_zoom_words"
    # Measured, not shipped: the whole shipped adapter on the zoom-in clips alone, its words out, 4b's recipe.
    zoom_only = TrainConfig.from_yaml(folder / "motion_zoom_only.yaml")
    assert not zoom_only.lora.enabled and Path(zoom_only.adapter).resolve() == work / "motion_high_noise" / "adapter"
    assert zoom_only.data.caption_contains == zoom_only.data.caption_remove == "camera zooming in"
    assert Path(zoom_only.output_dir).resolve() == work / "motion_zoom_only"
    # Measured, not shipped: the shipped base fine-tuned with offset noise.
    from motionkit.train.image_config import ImageTrainConfig

    offset = ImageTrainConfig.from_yaml(folder / "base_offset.yaml")
    assert offset.stage == "finetune" and offset.noise_offset == 0.1
    assert Path(offset.base).resolve() == work / "base" / "pipeline"
    assert Path(offset.output_dir).resolve() == work / "base_offset"
    # The adapter that ships: stage "motion"'s, trained on with high noise given its share.
    high_noise = TrainConfig.from_yaml(folder / "motion_high_noise.yaml")
    assert Path(high_noise.adapter).resolve() == work / "motion" / "adapter"
    assert (high_noise.loss_weighting, high_noise.max_loss_weight, high_noise.timestep_sampling) == ("v", 100, "uniform")
    assert high_noise.image_cond.enabled and high_noise.image_cond.first_frame_prob == 0.9 and high_noise.image_cond.joint_dropout == 0.1
    assert Path(high_noise.output_dir).resolve() == work / "motion_high_noise"
    # The encoder that ships: stage "encoder"'s, trained on against that adapter with plain epsilon errors.
    low_noise = TrainConfig.from_yaml(folder / "encoder_low_noise.yaml")
    assert Path(low_noise.encoder.init_from).resolve() == work / "encoder" / "encoder"
    assert Path(low_noise.encoder.motion_adapter).resolve() == work / "motion_high_noise" / "adapter"
    assert low_noise.loss_weighting == "none" and low_noise.data == encoder.data
    script = (root / "scripts" / "make_tiny_family.sh").read_text()
    assert '"$WORK/encoder_low_noise/encoder" "$FAMILY/encoders/tiny-sparsectrl-rgb"' in script
    assert script.index("train_stage motion_high_noise") < script.index("train_stage encoder_low_noise") < script.index("wants ship")
    assert 'convert "$WORK/motion_high_noise/adapter" "$FAMILY/adapters/tiny-motion"' in script
    # The personalized base that ships: stage 3's fine-tune trained on at a higher lr (stage 3b).
    from motionkit.train.image_config import ImageTrainConfig

    personalized = ImageTrainConfig.from_yaml(folder / "personalized.yaml")
    neon = ImageTrainConfig.from_yaml(folder / "personalized_neon.yaml")
    assert Path(neon.base).resolve() == work / "personalized" / "pipeline"
    assert Path(neon.output_dir).resolve() == work / "personalized_neon" and neon.data == personalized.data
    assert neon.lr > personalized.lr and neon.stage == "finetune"
    assert script.index("train_stage personalized train-image") < script.index("train_stage personalized_neon") < script.index("wants ship")
    assert 'cp -r "$WORK/personalized_neon/pipeline" "$FAMILY/bases/tiny-personalized"' in script
    assert script.index("train_stage motion_lora_zoom") < script.index("train_stage motion_high_noise") < script.index("wants ship")
