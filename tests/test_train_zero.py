"""DeepSpeed ZeRO-2/3 (``distributed.strategy zero2|zero3``): refused in one line where it cannot run (CPU,
no DeepSpeed, combinations that need whole weights); checkpoints carry DeepSpeed's state in ``zero/``,
written atomically and read weights-only. Where DeepSpeed is installed its CPU engine (outside accelerate,
which turns DeepSpeed off on CPU) saves and resumes through ``motionkit.train.zero``; where CUDA is too,
a tiny run trains, resumes and exports under both stages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from motionkit.errors import MotionkitError
from motionkit.train import zero
from tests.test_train import fresh_accelerate_state  # noqa: F401
from tests.test_train import PatternClips, make_trainer, reset_accelerate, tiny_base, tiny_config

HAS_DEEPSPEED = zero.deepspeed_installed()
ZERO = ("zero2", "zero3")


def _config(**changes):
    from motionkit.train.config import DistributedConfig

    strategy = changes.pop("strategy")
    return dict(changes, distributed=DistributedConfig(strategy))


# -- refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ZERO)
def test_zero_on_cpu_is_refused_and_points_to_fsdp2(tmp_path, monkeypatch, strategy):
    messages = []
    with pytest.raises(MotionkitError, match="DeepSpeed ZeRO needs CUDA GPUs") as err:
        make_trainer(tmp_path, max_steps=1, cpu=True, **_config(strategy=strategy)).setup()
    messages.append(str(err.value))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # cpu=false on a machine without CUDA
    with pytest.raises(MotionkitError, match="DeepSpeed ZeRO needs CUDA GPUs") as err:
        make_trainer(tmp_path, max_steps=1, cpu=False, **_config(strategy=strategy)).setup()
    messages.append(str(err.value))
    for message in messages:
        assert "use distributed.strategy fsdp2" in message and "\n" not in message
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("strategy", ZERO)
def test_zero_without_deepspeed_or_with_a_deepspeed_config_file_is_refused(tmp_path, monkeypatch, strategy):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(zero, "deepspeed_installed", lambda: False)
    with pytest.raises(MotionkitError, match="pip install deepspeed") as err:
        make_trainer(tmp_path, max_steps=1, cpu=False, **_config(strategy=strategy)).setup()
    assert "\n" not in str(err.value)
    monkeypatch.setattr(zero, "deepspeed_installed", lambda: True)
    with pytest.raises(MotionkitError, match="launch without deepspeed_config_file"):
        zero.check_zero_available(strategy, False, {"ACCELERATE_DEEPSPEED_CONFIG_FILE": "ds.json"})


def test_accelerate_deepspeed_without_a_zero_strategy_points_to_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(MotionkitError, match="set distributed.strategy=zero2 or zero3") as err:
        make_trainer(tmp_path, max_steps=1, cpu=True).setup()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("strategy", ZERO)
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"validation.every": 5}, "validation.every needs the whole UNet"),
        ({"ema": True}, "ema keeps a whole copy"),
        ({"lora.enabled": True, "lora.base_adapter": "adapter", "mixed_precision": "bf16"}, "DeepSpeed casts the whole model"),
    ],
)
def test_zero_config_refuses_what_needs_whole_weights(strategy, changes, expected):
    from motionkit.train.config import TrainConfig

    overrides = [f"{k}={v}" for k, v in {"distributed.strategy": strategy, **changes}.items()]
    with pytest.raises(MotionkitError, match=expected) as err:
        TrainConfig().with_overrides(overrides)
    assert strategy in str(err.value) and "\n" not in str(err.value)


def test_a_zero_checkpoint_does_not_resume_under_another_strategy(tmp_path):
    out = tmp_path / "run"
    make_trainer(out, max_steps=1, batch_size=1, cpu=True, export_formats=("motionkit",)).train()
    checkpoint = out / "checkpoints" / "checkpoint-00000001"
    state = torch.load(checkpoint / "training_state.pt", weights_only=True)
    torch.save({**state, "optimizer": None, "zero": zero.saved_layout("zero3", 2)}, checkpoint / "training_state.pt")
    with pytest.raises(MotionkitError, match="resume it with distributed.strategy zero3, not ddp") as err:
        make_trainer(out, max_steps=2, batch_size=1, cpu=True, resume_from="latest").setup()
    assert "\n" not in str(err.value)
    # And the other way round, and a changed process count (checked before DeepSpeed reads anything).
    with pytest.raises(MotionkitError, match="not written by a distributed.strategy zero2 run"):
        zero.load_engine_state(None, checkpoint, None, "zero2", 1)
    (checkpoint / zero.ZERO_DIR / zero.ZERO_TAG).mkdir(parents=True)
    with pytest.raises(MotionkitError, match="resume with the same strategy and process count"):
        zero.load_engine_state(None, checkpoint, zero.saved_layout("zero3", 2), "zero3", 1)


class NotATensor:
    """Stands for anything pickled that is not plain state."""


def test_deepspeed_files_are_read_weights_only(tmp_path, monkeypatch):
    monkeypatch.setattr(zero, "_allowed_classes", lambda: [])
    folder = tmp_path / zero.ZERO_DIR / zero.ZERO_TAG
    folder.mkdir(parents=True)
    torch.save({"module": {"w": torch.ones(2)}, "ds_version": "0"}, folder / "mp_rank_00_model_states.pt")
    zero.check_weights_only(tmp_path / zero.ZERO_DIR)  # plain state passes
    torch.save({"optimizer_state_dict": NotATensor()}, folder / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    with pytest.raises(MotionkitError, match="not a plain DeepSpeed state file") as err:
        zero.check_weights_only(tmp_path / zero.ZERO_DIR)
    assert "\n" not in str(err.value)


# -- checkpoint layout ------------------------------------------------------------------------------


class FakeEngine:
    """What ``write_engine_state`` asks of DeepSpeed's engine: one file per process under the tag."""

    def __init__(self, processes: int) -> None:
        self.processes = processes

    def save_checkpoint(self, save_dir, tag, save_latest, exclude_frozen_parameters):
        assert not save_latest and exclude_frozen_parameters  # the frozen UNet is not copied into checkpoints
        for rank in range(self.processes):
            target = Path(save_dir) / tag / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt"
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"rank": rank}, target)


class MainProcess:
    is_main_process = True

    def wait_for_everyone(self) -> None:
        pass


def test_zero_state_moves_into_the_checkpoint_atomically(tmp_path):
    from accelerate import PartialState

    from motionkit.train.checkpoint import Position, checkpoint_dirs, clean_checkpoint_temps, save_checkpoint

    PartialState(cpu=True)  # broadcast_object_list needs accelerate's state (one process: no traffic)
    root = tmp_path / "checkpoints"
    folder = zero.write_engine_state(FakeEngine(2), root, MainProcess())
    assert folder.parent == root and folder.name.startswith(".zero.tmp-") and not checkpoint_dirs(root)
    common = dict(trainable={"w": torch.ones(2)}, adapter_config={}, training_state={}, rng_states=[], config={}, keep=2)
    path = save_checkpoint(root, Position(1, 0, 1), folders={zero.ZERO_DIR: folder}, **common)
    assert not folder.exists()
    files = sorted(str(p.relative_to(path)) for p in (path / zero.ZERO_DIR).rglob("*.pt"))
    assert files == [f"{zero.ZERO_DIR}/{zero.ZERO_TAG}/zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)]
    assert {p.name for p in root.iterdir()} == {path.name}
    # A killed writer's half-written DeepSpeed folder is removed as any checkpoint temporary.
    (root / ".zero.tmp-999999999-0123abcd").mkdir()
    assert [p.name for p in clean_checkpoint_temps(root)] == [".zero.tmp-999999999-0123abcd"]
    # A checkpoint write that fails leaves no new checkpoint (the trainer then removes the DeepSpeed folder).
    folder = zero.write_engine_state(FakeEngine(1), root, MainProcess())
    unpicklable = {**common, "training_state": {"x": lambda: 0}}
    with pytest.raises(Exception, match="pickle"):
        save_checkpoint(root, Position(2, 0, 2), folders={zero.ZERO_DIR: folder}, **unpicklable)
    assert [p.name for p in checkpoint_dirs(root)] == [path.name] and folder.exists()


# -- DeepSpeed's CPU engine (outside accelerate) ----------------------------------------------------

ENGINE_SCRIPT = r"""
import os, sys, torch
from pathlib import Path
import deepspeed
from motionkit.train import zero
from motionkit.train.checkpoint import Position, save_checkpoint

stage, root = int(sys.argv[1]), Path(sys.argv[2])

class Main:
    is_main_process = True
    def wait_for_everyone(self): pass

def build():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    model[0].requires_grad_(False)  # frozen, as the UNet
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    config = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1, "gradient_clipping": 1.0,
              "zero_optimization": {"stage": stage}, "zero_allow_untested_optimizer": True}
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    return model, engine

def step(engine, i):
    loss = engine(torch.randn(1, 4, generator=torch.Generator().manual_seed(i))).pow(2).sum()
    engine.backward(loss)
    engine.step()
    return loss.item()

model, engine = build()
for i in range(2):
    step(engine, i)
trained = zero.full_trained_state(model)
whole = zero.full_module_state(model)
folder = zero.write_engine_state(engine, root, Main())
path = save_checkpoint(root, Position(2, 0, 2), trainable=trained, adapter_config={}, training_state={}, rng_states=[],
                       config={}, keep=2, folders={zero.ZERO_DIR: folder})
straight = [step(engine, i) for i in (2, 3)]
after = zero.full_trained_state(model)
model2, engine2 = build()
zero.load_engine_state(engine2, path, zero.saved_layout(f"zero{stage}", 1), f"zero{stage}", 1)
loaded = zero.full_trained_state(model2)
resumed = [step(engine2, i) for i in (2, 3)]
after2 = zero.full_trained_state(model2)
assert sorted(trained) == ["1.bias", "1.weight"] and sorted(whole) == ["0.bias", "0.weight", "1.bias", "1.weight"]
shapes = {"0.weight": (8, 4), "0.bias": (8,), "1.weight": (2, 8), "1.bias": (2,)}
assert {k: tuple(v.shape) for k, v in whole.items()} == shapes, "the module state is not gathered whole"
assert all(torch.equal(loaded[k], trained[k]) for k in trained), "resume did not load the trained weights"
assert straight == resumed and all(torch.equal(after[k], after2[k]) for k in after), (straight, resumed)
print("OK")
"""


def _run_on_deepspeeds_cpu_engine(script: str, *args: str) -> str:
    """Run ``script`` in a one-process group of its own (DeepSpeed's engine sets up a process group and
    global state) on DeepSpeed's CPU accelerator; returns its stdout."""
    from tests.test_train_sharded import _free_port

    env = dict(
        os.environ, DS_ACCELERATOR="cpu", RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()), OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")]),
    )
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.skipif(not HAS_DEEPSPEED, reason="needs deepspeed (pip install deepspeed)")
@pytest.mark.parametrize("stage", (2, 3))
def test_deepspeeds_cpu_engine_saves_and_resumes_exactly_through_motionkit(tmp_path, stage):
    assert "OK" in _run_on_deepspeeds_cpu_engine(ENGINE_SCRIPT, str(stage), str(tmp_path / "checkpoints"))


UNET_SCRIPT = r"""
import sys, json, torch
from pathlib import Path
from tests.test_train import make_trainer
from motionkit.train import zero

stage, out = int(sys.argv[1]), Path(sys.argv[2])
torch.set_num_threads(1)
trainer = make_trainer(out, max_steps=2, batch_size=1, cpu=True).setup()
trainer.deepspeed = True  # the trainer's ZeRO paths: gathered hashes, partitions' non-finite check, gathered state
trainer.model = zero.cpu_engine(trainer.motion_unet, trainer.trainable, trainer.config, f"zero{stage}")
trainer.sampler.set_position(0, 0)
losses = []
for i, batch in zip(range(2), trainer.loader):
    loss = trainer.compute_loss(batch, 0, trainer.sampler.positions(i))
    trainer.model.backward(loss)
    trainer.model.step()
    losses.append(loss.item())
    assert trainer._nonfinite_weight() is None
assert trainer._frozen_hashes() == trainer.frozen_hashes, "frozen weights changed or were not gathered"
whole = trainer.whole_adapter()
trained = trainer.trainable_state()
state = whole.state_dict()
assert all(torch.equal(state[k], v) for k, v in trained.items())
print(json.dumps(losses))
"""


@pytest.mark.skipif(not HAS_DEEPSPEED, reason="needs deepspeed (pip install deepspeed)")
@pytest.mark.parametrize("stage", (2, 3))
def test_the_motion_unet_under_deepspeeds_cpu_engine_computes_the_ddp_run(tmp_path, stage):
    stdout = _run_on_deepspeeds_cpu_engine(UNET_SCRIPT, str(stage), str(tmp_path / "zero"))
    losses = json.loads(stdout.strip().splitlines()[-1])
    ddp = make_trainer(tmp_path / "ddp", max_steps=2, batch_size=1, cpu=True).train()
    torch.testing.assert_close(torch.tensor(losses), torch.tensor([h["loss"] for h in ddp.history]), rtol=1e-5, atol=1e-6)


# -- GPU: accelerate + DeepSpeed ----------------------------------------------------------------------

STEPS, EVERY = 3, 2
GPU_WORLD = min(2, torch.cuda.device_count())
ON_GPU = torch.cuda.is_available() and HAS_DEEPSPEED


def _phases(strategy: str) -> list[tuple[str, dict]]:
    common = dict(batch_size=1, checkpoint_every=EVERY, strategy=strategy, export_formats=("motionkit",))
    return [
        (f"{strategy}-straight", dict(common, max_steps=STEPS)),
        (f"{strategy}-resumed", dict(common, max_steps=EVERY)),
        (f"{strategy}-resumed", dict(common, max_steps=STEPS, resume_from="latest")),
    ]


def _gpu_worker(rank: int, world: int, root: str, ports: list[int]) -> None:
    from motionkit.train.trainer import Trainer

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1")
    phases = [phase for strategy in ZERO for phase in _phases(strategy)]
    for (folder, changes), port in zip(phases, ports):
        os.environ["MASTER_PORT"] = str(port)
        reset_accelerate()
        trainer = Trainer(tiny_config(Path(root) / folder, **_config(**changes)), base=tiny_base(), dataset=PatternClips())
        trainer.setup()
        assert trainer.deepspeed and trainer.accelerator.distributed_type.value == "DEEPSPEED"
        assert trainer.position.step == (EVERY if changes.get("resume_from") else 0), (folder, trainer.position)
        trainer.train()


@pytest.fixture(scope="module")
def gpu_zero_runs(tmp_path_factory) -> Path:
    import torch.multiprocessing as mp

    from tests.test_train_sharded import _free_port

    root = tmp_path_factory.mktemp("zero-gpu")
    ports = [_free_port() for _ in range(3 * len(ZERO))]
    mp.spawn(_gpu_worker, args=(GPU_WORLD, str(root), ports), nprocs=GPU_WORLD, join=True)
    return root


@pytest.mark.skipif(not ON_GPU, reason="needs CUDA and deepspeed")
@pytest.mark.parametrize("strategy", ZERO)
def test_gpus_train_resume_and_export_under_zero(gpu_zero_runs, strategy):
    from tests.test_train_sharded import _adapter, _checkpoint, _losses

    straight, resumed = gpu_zero_runs / f"{strategy}-straight", gpu_zero_runs / f"{strategy}-resumed"
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["strategy"] == strategy and summary["processes"] == GPU_WORLD and summary["frozen_unchanged"]
    checkpoint = resumed / "checkpoints" / f"checkpoint-{EVERY:08d}"
    assert (checkpoint / zero.ZERO_DIR / zero.ZERO_TAG).is_dir()
    assert torch.load(checkpoint / "training_state.pt", weights_only=True)["zero"] == zero.saved_layout(strategy, GPU_WORLD)
    # GPU kernels may reorder sums: the resumed run matches the uninterrupted one to rounding.
    torch.testing.assert_close(torch.tensor(_losses(resumed)), torch.tensor(_losses(straight)), rtol=1e-4, atol=1e-6)
    one, two = _adapter(straight), _adapter(resumed)
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5)
    # The export is the gathered fp32 trained weights, whole (the checkpoint's trainable.safetensors).
    trained = _checkpoint(straight, STEPS)["trainable"]
    assert set(trained) <= set(one) and all(torch.equal(one[k], trained[k]) for k in trained)


def test_a_plain_process_becomes_a_one_process_group_and_a_launched_one_is_left_alone():
    plain: dict[str, str] = {}
    zero.ensure_process_group_env(plain)
    assert plain["RANK"] == plain["LOCAL_RANK"] == "0" and plain["WORLD_SIZE"] == "1" and plain["MASTER_PORT"].isdigit()
    launched = {"LOCAL_RANK": "1", "WORLD_SIZE": "2", "RANK": "1"}
    zero.ensure_process_group_env(launched)
    assert launched == {"LOCAL_RANK": "1", "WORLD_SIZE": "2", "RANK": "1"}


def test_the_deepspeed_plugin_takes_every_setting_from_the_training_config(monkeypatch):
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "cpu")  # a launcher's leftover: ignored
    plugin = zero.deepspeed_plugin("zero3", batch_size=2, gradient_accumulation_steps=4, max_grad_norm=0.5)
    config = plugin.deepspeed_config
    assert config["zero_optimization"]["stage"] == 3 and config["gradient_accumulation_steps"] == 4
    assert config["gradient_clipping"] == 0.5 and config["train_micro_batch_size_per_gpu"] == 2
    assert config["zero_optimization"]["offload_optimizer"]["device"] == "none"
    unclipped = zero.deepspeed_plugin("zero2", batch_size=1, gradient_accumulation_steps=1, max_grad_norm=0.0)
    assert unclipped.deepspeed_config["zero_optimization"]["stage"] == 2 and "gradient_clipping" not in unclipped.deepspeed_config
