"""Step caching (``motionkit.pipeline.step_cache``): off by default and exact there, the shallow forward equal to
the full UNet on a fresh feature, deep blocks only on full steps, features keyed by window and guidance batch,
composition with context windows, image conditioning, SDXL and FreeInit, refusals, and the CLI flag."""

from __future__ import annotations

import json

import pytest
import torch

from motionkit import MotionAdapter, MotionkitError
from motionkit.cli import main
from motionkit.injection import inject
from motionkit.pipeline.motion_pipeline import MotionPipeline
from motionkit.pipeline.step_cache import StepCache, StepCacheSettings, check_step_cache, shallow_forward, skip_branches
from motionkit.tiny import randomize_, tiny_pipeline_components, tiny_unet, unet_inputs
from motionkit.video_io import sidecar_path

SIZE = 64  # 8x8 latents with the tiny VAE
STEPS = 6


def _pipeline(family: str = "sd", **adapter_overrides) -> MotionPipeline:
    components = tiny_pipeline_components(family=family)
    config = dict(preset="animatediff-v2", max_seq_length=8, temporal_norm="across_frames")
    adapter = randomize_(MotionAdapter.from_unet(components["unet"], **{**config, **adapter_overrides}))
    pipe = MotionPipeline.from_components(components, adapter)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe() -> MotionPipeline:
    return _pipeline()


def _run(pipe, **kwargs) -> torch.Tensor:
    args = dict(
        prompt="a cat walking", negative_prompt="blurry", num_frames=4, height=SIZE, width=SIZE,
        num_inference_steps=STEPS, output_type="pt", generator=torch.Generator().manual_seed(0),
    )
    return pipe(**{**args, **kwargs}).frames


def _latents(pipe, **kwargs) -> torch.Tensor:
    return _run(pipe, output_type="latent", **kwargs)


def _assert_close_not_equal(cached: torch.Tensor, exact: torch.Tensor, limit: float = 0.05) -> None:
    """Cached sampling departs from exact sampling, but by a small fraction (another seed: about 1.4)."""
    error = float((cached - exact).norm() / exact.norm())
    assert 0 < error < limit, error


def _assert_shallow_is_exact_on_fresh_features(pipe, monkeypatch, **kwargs) -> None:
    """Sample with caching, but on every cached step also run the full UNet first and check that the shallow
    forward, fed the feature that very call kept, gives its output bit for bit: the cut is exact in context."""
    keep, compared = StepCache._run, []

    def both(self, motion_unet, step, frames, sample, *args, **unet_kwargs):
        if self.is_full(step):
            return keep(self, motion_unet, step, frames, sample, *args, **unet_kwargs)
        key = (frames, int(sample.shape[0]))
        with self._keeping(key):
            full = motion_unet(sample, *args, **unet_kwargs).sample
        with self._shallow(self._features[key]):
            shallow = motion_unet(sample, *args, **unet_kwargs).sample
        torch.testing.assert_close(shallow, full, atol=0, rtol=0)
        compared.append(step)
        return motion_unet(sample, *args, **unet_kwargs)

    monkeypatch.setattr(StepCache, "_run", both)
    _latents(pipe, cache_interval=2, **kwargs)
    monkeypatch.setattr(StepCache, "_run", keep)
    assert compared


class _Calls:
    """Counts forward calls of the UNet's deepest block and of its conv_in while in use."""

    def __init__(self, unet):
        self.deep = self.shallow = 0
        self._handles = [
            unet.mid_block.register_forward_hook(lambda *_: self._count("deep")),
            unet.conv_in.register_forward_hook(lambda *_: self._count("shallow")),
        ]

    def _count(self, what: str) -> None:
        setattr(self, what, getattr(self, what) + 1)

    def __enter__(self) -> "_Calls":
        return self

    def __exit__(self, *_) -> None:
        for handle in self._handles:
            handle.remove()


# -- the shallow forward --------------------------------------------------------------------------------------


def _skip_shapes(unet, inputs) -> list[torch.Size]:
    """The shapes of the skip features the full forward collects (conv_in, then every down block's)."""
    shapes: list[torch.Size] = []
    handles = [unet.conv_in.register_forward_hook(lambda _m, _a, out: shapes.append(out.shape))]
    for block in unet.down_blocks:
        handles.append(block.register_forward_hook(lambda _m, _a, out: shapes.extend(r.shape for r in out[1])))
    unet(**inputs)
    for handle in handles:
        handle.remove()
    return shapes


@pytest.mark.parametrize("name, size", [("tiny-sd", None), ("tiny-sdxl", None), ("medium-sd", None), ("medium-sd", 10)])
@pytest.mark.parametrize("control", [False, True])
def test_shallow_forward_on_a_fresh_feature_equals_the_full_unet(name, size, control):
    unet = tiny_unet(name).eval()
    inputs = unet_inputs(unet, batch=2, frames=1)
    sample = inputs["sample"][:, :, 0]  # the plain UNet takes [B, C, H, W]
    # 10 is no multiple of the UNet's 4x upsampling: the up blocks get the skip sizes handed down.
    inputs["sample"] = sample if size is None else sample[..., :size, :size]
    if control:
        generator = torch.Generator().manual_seed(1)
        shapes = _skip_shapes(unet, inputs)
        inputs["down_block_additional_residuals"] = tuple(torch.randn(s, generator=generator) for s in shapes)
        deepest = unet.down_blocks[-1]
        mid_shape = (shapes[-1][0], deepest.resnets[-1].out_channels, *shapes[-1][2:])
        inputs["mid_block_additional_residual"] = torch.randn(mid_shape, generator=generator)
    with torch.no_grad():
        for branch in range(skip_branches(unet)):
            cache = StepCache(StepCacheSettings(2, branch), unet, num_steps=2)
            with cache._keeping(("key",)):
                full = unet(**inputs, return_dict=False)[0]
            feature = cache._features[("key",)]
            shallow = shallow_forward(unet, feature, branch, **inputs, return_dict=False)[0]
            torch.testing.assert_close(shallow, full, atol=0, rtol=0)


def test_features_are_kept_per_window_and_per_guidance_batch():
    unet = tiny_unet("tiny-sd").eval()
    motion_unet = inject(unet, randomize_(MotionAdapter.from_unet(unet, max_seq_length=8)))
    cache = StepCache(StepCacheSettings(2), unet, num_steps=2)
    states = torch.randn(2, 77, unet.config.cross_attention_dim)
    windows = {(0, 1, 2, 3): torch.randn(2, 4, 4, 8, 8), (4, 5, 6, 7): torch.randn(2, 4, 4, 8, 8)}
    single = torch.randn(1, 4, 4, 8, 8)  # the first window without guidance: a batch of one

    def call(step: int, frames, sample) -> torch.Tensor:
        return cache.runner(motion_unet, step, list(frames))(sample, 10, encoder_hidden_states=states[: len(sample)]).sample

    with torch.no_grad():
        full = {frames: call(0, frames, sample) for frames, sample in windows.items()}
        full_single = call(0, (0, 1, 2, 3), single)
        # A cached step on the same inputs reproduces each call's own full step only with its own feature.
        for frames, sample in windows.items():
            torch.testing.assert_close(call(1, frames, sample), full[frames], atol=0, rtol=0)
        torch.testing.assert_close(call(1, (0, 1, 2, 3), single), full_single, atol=0, rtol=0)
    assert (cache.full_calls, cache.cached_calls) == (3, 3)
    assert len(cache._features) == 3
    motion_unet.eject()


# -- the pipeline ---------------------------------------------------------------------------------------------


def test_caching_is_off_by_default_and_interval_one_is_exact(pipe):
    with _Calls(pipe.unet) as calls:
        default = _run(pipe)
    assert calls.deep == calls.shallow == STEPS
    for off in (None, 1):
        torch.testing.assert_close(_run(pipe, cache_interval=off), default, atol=0, rtol=0)
    assert "forward" not in pipe.unet.__dict__  # the shallow forward never outlives a call


@pytest.mark.parametrize("interval", [2, 3])
def test_interval_runs_deep_blocks_on_full_steps_only_and_stays_close(pipe, interval):
    exact = _latents(pipe)
    with _Calls(pipe.unet) as calls:
        cached = _latents(pipe, cache_interval=interval)
    assert calls.shallow == STEPS
    assert calls.deep == len(range(0, STEPS, interval))
    _assert_close_not_equal(cached, exact)
    assert "forward" not in pipe.unet.__dict__


def test_deeper_branch_is_closer_to_exact(pipe):
    exact = _latents(pipe)
    errors = [float((_latents(pipe, cache_interval=3, cache_branch=b) - exact).abs().mean()) for b in (0, 3)]
    assert errors[1] < errors[0]


def test_quadratic_schedule_crowds_full_steps_at_the_start():
    uniform, quadratic = (StepCacheSettings(3, 0, s).full_steps(25) for s in ("uniform", "quadratic"))
    assert len(uniform) == len(quadratic) == 9 and 0 in quadratic
    assert sorted(quadratic)[:4] == [0, 1, 2, 3] and max(quadratic) < 24


def test_context_windows_keep_one_feature_per_window(pipe, monkeypatch):
    windows = 2  # 12 frames in windows of 8 overlapping by 4
    exact = _latents(pipe, num_frames=12, context_length=8, context_overlap=4)
    with _Calls(pipe.unet) as calls:
        cached = _latents(pipe, num_frames=12, context_length=8, context_overlap=4, cache_interval=2)
    assert calls.shallow == windows * STEPS and calls.deep == windows * len(range(0, STEPS, 2))
    _assert_close_not_equal(cached, exact)
    _assert_shallow_is_exact_on_fresh_features(pipe, monkeypatch, num_frames=12, context_length=8, context_overlap=4)


def test_without_guidance_and_with_free_init(pipe):
    exact = _latents(pipe, guidance_scale=1.0)
    _assert_close_not_equal(_latents(pipe, guidance_scale=1.0, cache_interval=2), exact)
    pipe.enable_free_init(num_iters=2)
    try:
        with _Calls(pipe.unet) as calls:
            _run(pipe, cache_interval=2)
    finally:
        pipe.disable_free_init()
    assert calls.deep == 2 * len(range(0, STEPS, 2))  # every pass starts afresh with a full step


def _assert_cached_every_other_step(pipe, monkeypatch, limit: float = 0.05, **kwargs) -> None:
    """``cache_interval=2`` runs the deep blocks on every other step only, lands near the exact run without
    equalling it, and each cached step's shallow pass is exact on fresh features."""
    exact = _latents(pipe, **kwargs)
    with _Calls(pipe.unet) as calls:
        cached = _latents(pipe, **kwargs, cache_interval=2)
    assert calls.deep == len(range(0, STEPS, 2))
    _assert_close_not_equal(cached, exact, limit)
    _assert_shallow_is_exact_on_fresh_features(pipe, monkeypatch, **kwargs)


def test_trained_image_conditioning(monkeypatch):
    _assert_cached_every_other_step(_pipeline(image_cond_channels=5), monkeypatch, image=torch.rand(3, SIZE, SIZE))


def test_sdxl_pipeline(monkeypatch):
    _assert_cached_every_other_step(_pipeline("sdxl"), monkeypatch)


def test_controlnet_residuals_reach_cached_steps(monkeypatch):
    from diffusers import ControlNetModel
    from PIL import Image

    components = tiny_pipeline_components()
    controlnet = randomize_(ControlNetModel.from_unet(components["unet"]), seed=1, std=0.05).eval()
    adapter = randomize_(MotionAdapter.from_unet(components["unet"], max_seq_length=8))
    pipe = MotionPipeline.from_components(components, adapter, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(3)
    video = [Image.fromarray((torch.rand(SIZE, SIZE, 3, generator=generator) * 255).byte().numpy()) for _ in range(4)]
    _assert_cached_every_other_step(pipe, monkeypatch, conditioning_frames=video)


def test_ip_adapter(tmp_path, monkeypatch):
    from motionkit.pipeline.ip_adapter import load_ip_adapters
    from tests.test_ip_adapter import _image, write_ip_adapter

    pipe = _pipeline()
    load_ip_adapters(pipe, write_ip_adapter(tmp_path, pipe.unet, "plain", ".safetensors"), tmp_path / "models" / "image_encoder")
    # The random image projection moves the features more from step to step than text alone does.
    _assert_cached_every_other_step(pipe, monkeypatch, limit=0.1, ip_adapter_image=_image(1))


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"cache_interval": 0}, "cache_interval must be a whole number of at least 1"),
        ({"cache_interval": -2}, "cache_interval must be a whole number of at least 1"),
        ({"cache_interval": 2.5}, "cache_interval must be a whole number of at least 1"),
        ({"cache_interval": True}, "cache_interval must be a whole number of at least 1"),
        ({"cache_interval": "2"}, "cache_interval must be a whole number of at least 1"),
        ({"cache_interval": 2, "cache_branch": 6}, "cache_branch must be a whole number from 0 to 5"),
        ({"cache_interval": 2, "cache_branch": -1}, "cache_branch must be a whole number from 0 to 5"),
        ({"cache_interval": 2, "cache_schedule": "random"}, "cache_schedule 'random' is not one of"),
    ],
)
def test_bad_values_are_refused_in_one_line(pipe, kwargs, needle):
    with pytest.raises(MotionkitError, match=needle) as err:
        _run(pipe, **kwargs)
    assert "\n" not in str(err.value)


def test_check_returns_none_when_off_and_refuses_other_unets_only_when_on():
    assert check_step_cache(None) is None and check_step_cache(1) is None
    assert check_step_cache(3, 1) == StepCacheSettings(3, 1)
    unet = tiny_unet("tiny-sd")
    unet.up_blocks[0].__class__ = type("OtherUpBlock", (type(unet.up_blocks[0]),), {})
    assert check_step_cache(None, unet=unet) is None
    with pytest.raises(MotionkitError, match="step caching runs SD-style UNets only and this one has OtherUpBlock blocks"):
        check_step_cache(2, unet=unet)


# -- the CLI --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from tests.test_train import write_base_folder

    root = tmp_path_factory.mktemp("cache")
    write_base_folder(root / "base")  # the seed-0 tiny components
    MotionAdapter.from_unet(tiny_pipeline_components(seed=0)["unet"]).save_pretrained(root / "adapter")
    return root


def _animate(assets, *extra: str) -> int:
    small = ["--frames", "4", "--width", "64", "--height", "64", "--steps", "3", "--prompt", "a dog"]
    return main(["animate", "--base", str(assets / "base"), "--adapter", str(assets / "adapter"), *small, *extra])


def test_cli_flag_reaches_the_sidecar(assets, tmp_path, capsys):
    out = tmp_path / "clip.gif"
    assert _animate(assets, "--cache-interval", "2", "--out", str(out)) == 0, capsys.readouterr().err
    assert json.loads(sidecar_path(out).read_text())["settings"]["cache_interval"] == 2
    plain = tmp_path / "plain.gif"
    assert _animate(assets, "--out", str(plain)) == 0
    assert json.loads(sidecar_path(plain).read_text())["settings"]["cache_interval"] is None


def test_cli_batch_key_and_refusals(assets, tmp_path, capsys):
    import yaml

    batch = {
        "base": str(assets / "base"), "adapter": str(assets / "adapter"), "frames": 3, "width": 64, "height": 64,
        "steps": 3, "format": "gif", "out": "videos", "cache_interval": 3,
        "prompts": ["a dog", {"prompt": "a boat", "cache_interval": 2, "out": "boat.gif"}],
    }
    config = tmp_path / "batch.yaml"
    config.write_text(yaml.safe_dump(batch))
    assert main(["animate", "--config", str(config)]) == 0, capsys.readouterr().err
    metas = {p.name: json.loads(p.read_text()) for p in (tmp_path / "videos").glob("*.json")}
    assert sorted(m["settings"]["cache_interval"] for m in metas.values()) == [2, 3]
    capsys.readouterr()
    for bad in ("0", "-1", "2.5", "two"):
        assert _animate(assets, "--cache-interval", bad, "--out", str(tmp_path / "x.gif")) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--cache-interval must be a whole number of at least 1" in err, err
    config.write_text(yaml.safe_dump({**batch, "cache_interval": 1.5}))
    assert main(["animate", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--cache-interval must be a whole number" in err, err
