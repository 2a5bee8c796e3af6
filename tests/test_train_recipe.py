"""The image-to-video training recipe (timestep sampling, loss weighting, frame-0 conditioning, joint
dropout) and SparseCtrl encoder training, on tiny models, 4 frames of 32x32 px, a few steps."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from motionkit.errors import MotionkitError
from motionkit.train.config import EncoderConfig, ImageCondConfig, TrainConfig
from motionkit.train.encoder_trainer import EncoderTrainer, trainer_for
from motionkit.train.trainer import Trainer, collate_clips
from tests.test_train import (  # noqa: F401
    FRAMES,
    PatternClips,
    fresh_accelerate_state,
    reset_accelerate,
    tiny_base,
    tiny_config,
)

# -- timestep sampling and loss weighting -----------------------------------------------------------


def test_uniform_sampling_draws_what_older_runs_drew():
    from motionkit.train.timesteps import sample_timestep

    cfg = TrainConfig()
    for seed in range(20):
        ours = sample_timestep(cfg, torch.Generator().manual_seed(seed), 1000)
        theirs = torch.randint(0, 1000, (), generator=torch.Generator().manual_seed(seed))
        assert torch.equal(ours, theirs)


def test_logit_normal_and_mixed_sampling_shift_towards_high_noise():
    from motionkit.train.timesteps import sample_timestep

    def draws(**changes) -> torch.Tensor:
        cfg = TrainConfig(**changes)
        g = torch.Generator().manual_seed(0)
        return torch.stack([sample_timestep(cfg, g, 1000) for _ in range(4000)]).float()

    uniform = draws()
    shifted = draws(timestep_sampling="logit_normal", logit_normal_mean=1.5)
    mixed = draws(timestep_sampling="mixed", logit_normal_mean=1.5, uniform_share=0.5)
    assert 0 <= shifted.min() and shifted.max() <= 999 and shifted.dtype == torch.float32
    # sigmoid(1.5) = 0.82: the median of the shifted draws, against 0.5 for uniform ones.
    assert abs(float(shifted.median()) - 817) < 25 and abs(float(uniform.median()) - 500) < 30
    assert float(uniform.median()) < float(mixed.median()) < float(shifted.median())
    assert (mixed < 100).float().mean() > 0.04  # the uniform share keeps low noise in training
    with pytest.raises(MotionkitError, match="timestep_sampling 'cosine' is not one of"):
        TrainConfig(timestep_sampling="cosine")
    with pytest.raises(MotionkitError, match="loss_weighting"):
        TrainConfig(loss_weighting="snr")


def test_loss_weights_follow_their_definitions():
    from diffusers import DDPMScheduler

    from motionkit.train.losses import diffusion_loss
    from motionkit.train.timesteps import loss_weights

    alphas = DDPMScheduler(beta_schedule="linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod
    t = torch.tensor([0, 300, 700, 961])
    a = alphas[t].double()
    snr = a / (1 - a)
    assert loss_weights(TrainConfig(), alphas, t, "epsilon") is None
    v = loss_weights(TrainConfig(loss_weighting="v", max_loss_weight=100.0), alphas, t, "epsilon")
    torch.testing.assert_close(v, (1 / a).clamp(max=100).float())
    assert v[-1] == 100 and v[0] < 1.01  # capped at high noise, ~1 at low noise
    assert torch.equal(loss_weights(TrainConfig(loss_weighting="v"), alphas, t, "v_prediction"), torch.ones(4))
    m = loss_weights(TrainConfig(loss_weighting="min_snr", min_snr_gamma=5.0), alphas, t, "epsilon")
    torch.testing.assert_close(m, (snr.clamp(max=5) / snr).float())
    mv = loss_weights(TrainConfig(loss_weighting="min_snr", min_snr_gamma=5.0), alphas, t, "v_prediction")
    torch.testing.assert_close(mv, (snr.clamp(max=5) / (snr + 1)).float())

    prediction, target = torch.randn(4, 4, 2, 3, 3), torch.randn(4, 4, 2, 3, 3)
    per_clip = ((prediction - target) ** 2).mean(dim=(1, 2, 3, 4))
    torch.testing.assert_close(diffusion_loss(prediction, target, v), (per_clip * v).mean())
    torch.testing.assert_close(diffusion_loss(prediction, target, torch.ones(4)), diffusion_loss(prediction, target))


def test_first_frame_prob_and_joint_dropout():
    from motionkit.train.image_cond import joint_dropout, training_image_cond

    latents = torch.randn(64, 4, 4, 2, 2)
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(64)]  # noqa: E731
    always = training_image_cond(latents, ImageCondConfig(cond_dropout=0.0, first_frame_prob=1.0), gens())
    assert (always[:, 0, 0] == 1).all() and not always[:, 0, 1:].any()
    mostly = training_image_cond(latents, ImageCondConfig(cond_dropout=0.0, first_frame_prob=0.7), gens())
    share = float((mostly[:, 0, 0, 0, 0] == 1).float().mean())
    assert 0.7 < share < 0.95  # 0.7 + 0.3 * 1/4 = 0.775 expected
    prompts, dropped = joint_dropout(["a"] * 64, gens(), 0.5)
    assert 10 < sum(dropped) < 54 and all((p == "") == d for p, d in zip(prompts, dropped))
    assert joint_dropout(["a", "b"], gens()[:2], 0.0) == (["a", "b"], [False, False])
    with pytest.raises(MotionkitError, match="image_cond.first_frame_prob"):
        ImageCondConfig(first_frame_prob=1.5)


def test_joint_dropout_empties_the_caption_and_the_image_in_a_step(tmp_path):
    reset_accelerate()
    cfg = tiny_config(tmp_path, image_cond=ImageCondConfig(enabled=True, cond_dropout=0.0, joint_dropout=1.0))
    trainer = Trainer(cfg, base=tiny_base(), dataset=PatternClips()).setup()
    seen = {}
    original = trainer.base.encode_prompts

    def spy(prompts, *args):
        seen["prompts"] = list(prompts)
        return original(prompts, *args)

    trainer.base.encode_prompts = spy
    conv = trainer.adapter.image_cond_conv
    with torch.no_grad():
        conv.weight.normal_()
    batch = collate_clips([trainer.dataset[i] for i in range(2)])
    trainer.compute_loss(batch, 0, [0, 1]).backward()
    assert seen["prompts"] == ["", ""]
    assert not conv.weight.grad.any()  # a zero condition reaches the branch's weights with no gradient


# -- SparseCtrl encoder ---------------------------------------------------------------------------


def test_encoder_is_diffusers_from_unet_without_touching_the_unet():
    from diffusers import SparseControlNetModel

    from motionkit.train.encoder import sparse_controlnet_from_unet

    unet = tiny_base()["unet"]
    before = copy.deepcopy(dict(unet.config))
    ours = sparse_controlnet_from_unet(unet)
    assert dict(unet.config) == before
    # diffusers' from_unet rewrites a list of down_block_types in place (and fails on a tuple): give it a copy.
    clone = copy.deepcopy(unet)
    clone.register_to_config(down_block_types=list(clone.config.down_block_types))
    theirs = SparseControlNetModel.from_unet(clone, conditioning_channels=4)
    assert ours.config.conditioning_channels == 4 and ours.config.use_simplified_condition_embedding
    assert ours.config.concat_conditioning_mask and ours.controlnet_cond_embedding.in_channels == 5
    a, b = ours.state_dict(), theirs.state_dict()
    assert a.keys() == b.keys()
    copied = [k for k in a if k.split(".")[0] in ("conv_in", "time_embedding", "down_blocks", "mid_block") and "motion" not in k]
    assert copied and all(torch.equal(a[k], b[k]) for k in copied)
    assert all(torch.equal(a[k], unet.state_dict()[k]) for k in copied if k in unet.state_dict())


def test_keyframe_condition_matches_the_sparsectrl_pipeline():
    from diffusers import AnimateDiffSparseControlNetPipeline

    from motionkit.train.encoder import keyframe_condition

    latents = torch.randn(2, 4, 6, 3, 3)
    frames = [0, 5]
    ours = keyframe_condition(latents, [frames, frames])
    # The pipeline receives the keyframes' latents in order and places them on their frames.
    theirs = AnimateDiffSparseControlNetPipeline.prepare_sparse_control_conditioning(
        None, latents[:, :, frames], 6, frames, latents.device, latents.dtype
    )
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    with pytest.raises(MotionkitError, match="keyframe 9 is outside"):
        keyframe_condition(latents, [[9], [0]])


def test_training_keyframes_recipe():
    from motionkit.train.encoder import draw_keyframes, training_keyframes

    cfg = EncoderConfig(first_frame_prob=0.5, first_last_prob=0.25, max_keyframes=3, cond_dropout=0.0, noise_aug=(0.0, 0.0))
    g = torch.Generator().manual_seed(0)
    sets = [draw_keyframes(8, cfg, g) for _ in range(400)]
    share = {"first": sum(s == [0] for s in sets) / 400, "first_last": sum(s == [0, 7] for s in sets) / 400}
    assert 0.4 < share["first"] < 0.65 and 0.15 < share["first_last"] < 0.35
    assert all(1 <= len(s) <= 3 and s == sorted(set(s)) and all(0 <= k < 8 for k in s) for s in sets)
    latents = torch.randn(3, 4, 8, 2, 2)
    cond, mask, dropped = training_keyframes(latents, cfg, [torch.Generator().manual_seed(i) for i in range(3)])
    assert dropped == [False] * 3 and cond.shape == latents.shape and mask.shape == (3, 1, 8, 2, 2)
    on = mask[:, 0, :, 0, 0] == 1
    assert on.any(dim=1).all() and torch.equal(cond[on.nonzero(as_tuple=True)[0], :, on.nonzero(as_tuple=True)[1]],
                                                latents[on.nonzero(as_tuple=True)[0], :, on.nonzero(as_tuple=True)[1]])
    assert not cond.transpose(1, 2)[~on].any()
    gone = training_keyframes(latents, EncoderConfig(cond_dropout=1.0), [torch.Generator().manual_seed(0)] * 3)
    assert gone[2] == [True] * 3 and not gone[0].any() and not gone[1].any()


def _motion_adapter(path):
    from motionkit.adapter import MotionAdapter
    from motionkit.formats import save_adapter

    torch.manual_seed(3)
    adapter = MotionAdapter.from_unet(tiny_base()["unet"], "animatediff-v2")
    with torch.no_grad():  # a trained-looking adapter: its zero-initialised outputs are not zero
        for p in adapter.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return save_adapter(adapter, path)


def encoder_config(tmp_path, **changes) -> TrainConfig:
    encoder = EncoderConfig(enabled=True, motion_adapter=str(_motion_adapter(tmp_path / "motion")))
    return tiny_config(tmp_path / "run", encoder=encoder, **changes)


def test_encoder_starts_as_a_no_op_and_its_residuals_reach_the_unet(tmp_path):
    reset_accelerate()
    trainer = EncoderTrainer(encoder_config(tmp_path), base=tiny_base(), dataset=PatternClips()).setup()
    latents = torch.randn(2, 4, FRAMES, 4, 4)
    t = torch.tensor([10, 900])
    hidden, _ = trainer.base.encode_prompts(["pattern 0", "pattern 1"], 32, 32)
    cond, mask = torch.randn_like(latents), torch.ones(2, 1, FRAMES, 4, 4)
    with torch.no_grad():
        alone = trainer.motion_unet(latents, t, hidden, return_dict=False)[0]
        fresh = trainer.denoiser(latents, t, hidden, cond, mask)
        assert torch.equal(fresh, alone)  # zero convolutions: a fresh encoder changes nothing
        for block in [*trainer.encoder.controlnet_down_blocks, trainer.encoder.controlnet_mid_block]:
            block.weight.normal_(std=0.1)
        trainer.encoder.controlnet_cond_embedding.weight.normal_(std=0.1)
        with_cond = trainer.denoiser(latents, t, hidden, cond, mask)
        other = trainer.denoiser(latents, t, hidden, cond * 0, mask * 0)
    assert not torch.allclose(with_cond, alone) and not torch.allclose(with_cond, other)


def test_encoder_trains_alone_exports_for_diffusers_and_resumes_bitwise(tmp_path, monkeypatch):
    from diffusers import SparseControlNetModel

    from tests.test_train import _interrupt_after

    changes = dict(max_steps=4, checkpoint_every=2, timestep_sampling="mixed", logit_normal_mean=1.0, loss_weighting="v")
    reset_accelerate()
    cfg = encoder_config(tmp_path / "a", **changes)
    assert isinstance(trainer_for(cfg), EncoderTrainer) and type(trainer_for(tiny_config(tmp_path))) is Trainer
    straight = EncoderTrainer(cfg, base=tiny_base(), dataset=PatternClips())
    adapter_before = None
    straight.setup()
    adapter_before = {k: v.clone() for k, v in straight.adapter.state_dict().items()}
    encoder_before = {k: v.clone() for k, v in straight.encoder.state_dict().items()}
    result = straight.train()
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history) and result.steps == 4
    assert all(torch.equal(v, straight.adapter.state_dict()[k]) for k, v in adapter_before.items())
    assert set(result.frozen_hashes) >= {"unet", "vae", "text_encoder", "adapter"}
    changed = [k for k, v in encoder_before.items() if not torch.equal(v, straight.encoder.state_dict()[k])]
    assert "controlnet_cond_embedding.weight" in changed and "controlnet_mid_block.weight" in changed
    assert all(p.grad is None for p in straight.base.unet.parameters())

    exported = SparseControlNetModel.from_pretrained(result.exported["encoder"])
    assert (tmp_path / "a" / "run" / "encoder" / "diffusion_pytorch_model.safetensors").is_file()
    mine = straight.encoder.state_dict()
    assert all(torch.equal(v, mine[k]) for k, v in exported.state_dict().items())
    state = json.loads((tmp_path / "a" / "run" / "checkpoints" / "checkpoint-00000004" / "state.json").read_text())
    assert state["config"]["encoder"]["enabled"] is True

    cfg_b = encoder_config(tmp_path / "b", **changes)
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "save_checkpoint", _interrupt_after(2))
        reset_accelerate()
        with pytest.raises(KeyboardInterrupt):
            EncoderTrainer(cfg_b, base=tiny_base(), dataset=PatternClips()).train()
    reset_accelerate()
    resumed = EncoderTrainer(cfg_b.replace(resume_from="latest"), base=tiny_base(), dataset=PatternClips())
    resumed.train()
    a, b = straight.trainable_state(), resumed.trainable_state()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in resumed.history]


def test_encoder_config_refusals(tmp_path):
    with pytest.raises(MotionkitError, match="encoder.motion_adapter"):
        EncoderConfig(enabled=True)
    with pytest.raises(MotionkitError, match="encoder training keeps the motion adapter frozen"):
        TrainConfig(encoder=EncoderConfig(enabled=True, motion_adapter="m"), image_cond=ImageCondConfig(enabled=True))
    with pytest.raises(MotionkitError, match="first_last_prob must be <= 1"):
        EncoderConfig(first_frame_prob=0.8, first_last_prob=0.3)
    cfg = TrainConfig.from_yaml(_yaml(tmp_path, "encoder:\n  enabled: true\n  motion_adapter: adapters/m\n"))
    assert cfg.encoder.motion_adapter == str(tmp_path / "adapters" / "m")  # relative to the config file


def _yaml(tmp_path, text: str):
    path = tmp_path / "train.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_encoder_starts_from_a_trained_one_and_refuses_one_that_does_not_fit(tmp_path):
    from diffusers import SparseControlNetModel

    reset_accelerate()
    first = EncoderTrainer(encoder_config(tmp_path / "a", max_steps=2), base=tiny_base(), dataset=PatternClips())
    exported = Path(first.train().exported["encoder"])
    reset_accelerate()
    cfg = encoder_config(tmp_path / "b", max_steps=1)
    on = EncoderTrainer(cfg.replace(encoder=replace(cfg.encoder, init_from=str(exported))), base=tiny_base(), dataset=PatternClips())
    on.setup()
    trained = SparseControlNetModel.from_pretrained(exported).state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in on.encoder.state_dict().items())
    assert on.encoder.controlnet_mid_block.weight.abs().max() > 0  # not the zero-initialised start
    cfg = TrainConfig.from_yaml(_yaml(tmp_path, "encoder:\n  enabled: true\n  motion_adapter: m\n  init_from: enc\n"))
    assert cfg.encoder.init_from == str(tmp_path / "enc")  # relative to the config file
    from motionkit.train.encoder_trainer import load_encoder_weights
    from motionkit.train.encoder import sparse_controlnet_from_unet

    with pytest.raises(MotionkitError, match="no SparseControlNetModel folder there"):
        load_encoder_weights(on.encoder, str(tmp_path / "missing"))
    other = sparse_controlnet_from_unet(tiny_base()["unet"])
    torch.nn.Module.to(other, dtype=torch.float32)
    wide = SparseControlNetModel.from_config({**dict(other.config), "conditioning_channels": 3})
    wide.save_pretrained(tmp_path / "wide")
    with pytest.raises(MotionkitError, match="do not fit the SparseControlNetModel built from this base"):
        load_encoder_weights(on.encoder, str(tmp_path / "wide"))
