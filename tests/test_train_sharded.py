"""Sharded and data-parallel training in 2 CPU processes (gloo): FSDP2 (``distributed.strategy fsdp2``) and
DDP each train, checkpoint, resume to the bits of the uninterrupted run, and export the gathered weights;
both strategies compute the same run. Engines that cannot run as asked are refused in one line; the GPU
variant runs where CUDA is."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch

from motionkit.errors import MotionkitError
from tests.test_train import fresh_accelerate_state  # noqa: F401
from tests.test_train import PatternClips, make_trainer, reset_accelerate, tiny_base, tiny_config

STEPS, EVERY = 3, 2
STRATEGIES = ("ddp", "fsdp2")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _phases(root: Path, strategy: str) -> list[tuple[str, dict]]:
    """(output folder, config changes): an uninterrupted run, and the same run stopped at EVERY and resumed."""
    common = dict(batch_size=1, checkpoint_every=EVERY, distributed={"strategy": strategy}, export_formats=("motionkit",))
    return [
        (f"{strategy}-straight", dict(common, max_steps=STEPS)),
        (f"{strategy}-resumed", dict(common, max_steps=EVERY)),
        (f"{strategy}-resumed", dict(common, max_steps=STEPS, resume_from="latest")),
    ]


def _all_phases(root: Path) -> list[tuple[str, dict]]:
    # bf16 too: the sharded model skips accelerate's prepare, so its autocast is motionkit's to apply.
    bf16 = ("fsdp2-bf16", dict(_phases(root, "fsdp2")[1][1], mixed_precision="bf16"))
    # One checkpoint format: the sharded run's step-EVERY checkpoint continues as a DDP run.
    sharded_checkpoint = root / "fsdp2-resumed" / "checkpoints" / f"checkpoint-{EVERY:08d}"
    crossed = ("fsdp2-to-ddp", dict(_phases(root, "ddp")[2][1], resume_from=str(sharded_checkpoint)))
    return [phase for strategy in STRATEGIES for phase in _phases(root, strategy)] + [bf16, crossed]


def _worker(rank: int, world: int, root: str, ports: list[int], device: str) -> None:
    from motionkit.train.config import DistributedConfig
    from motionkit.train.sharding import is_sharded
    from motionkit.train.trainer import Trainer

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1")
    phases = _all_phases(Path(root))
    for (folder, changes), port in zip(phases, ports):
        os.environ["MASTER_PORT"] = str(port)  # a fresh rendezvous: each run ends by destroying its group
        reset_accelerate()
        changes = {**changes, "distributed": DistributedConfig(**changes["distributed"]), "cpu": device == "cpu"}
        trainer = Trainer(tiny_config(Path(root) / folder, **changes), base=tiny_base(), dataset=PatternClips()).setup()
        # A resumed run starts at the checkpoint (not at 0, which would reach the same weights by retraining).
        assert trainer.position.step == (EVERY if changes.get("resume_from") else 0), (folder, trainer.position)
        sharded = [is_sharded(p) for p in trainer.trainable]
        assert all(sharded) if trainer.shards else not any(sharded), folder
        trainer.train()
    os.environ["MASTER_PORT"] = str(ports[-1])
    _one_shard_turns_non_finite(rank, Path(root), device)


def _one_shard_turns_non_finite(rank: int, root: Path, device: str) -> None:
    """A NaN in one process's shard only: every process must refuse the checkpoint (none may wait in a gather)."""
    from motionkit.train.config import DistributedConfig
    from motionkit.train.sharding import local_view
    from motionkit.train.trainer import Trainer, TrainingDivergedError

    reset_accelerate()
    config = tiny_config(root / "fsdp2-nan", batch_size=1, distributed=DistributedConfig("fsdp2"), cpu=device == "cpu")
    trainer = Trainer(config, base=tiny_base(), dataset=PatternClips()).setup()
    if rank == trainer.accelerator.num_processes - 1:
        shard = next(local_view(p) for p in trainer.trainable if local_view(p).numel())
        with torch.no_grad():
            shard.view(-1)[0] = float("nan")
    try:
        trainer.save_checkpoint()
    except TrainingDivergedError as err:
        (root / f"non-finite-{rank}.txt").write_text(str(err))
    finally:
        trainer.accelerator.end_training()


def _run_all(root: Path, device: str, world: int = 2) -> None:
    import torch.multiprocessing as mp

    ports = [_free_port() for _ in range(len(_all_phases(root)) + 1)]  # + the non-finite check
    mp.spawn(_worker, args=(world, str(root), ports, device), nprocs=world, join=True)


def _adapter(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter" / "diffusion_pytorch_model.safetensors"))


def _checkpoint(out: Path, step: int) -> dict:
    from safetensors.torch import load_file

    folder = out / "checkpoints" / f"checkpoint-{step:08d}"
    state = torch.load(folder / "training_state.pt", map_location="cpu", weights_only=True)
    return {"trainable": load_file(str(folder / "trainable.safetensors")), "optimizer": state["optimizer"]}


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "history.jsonl").read_text().splitlines()]


def _same(a: torch.Tensor, b: torch.Tensor, exact: bool) -> bool:
    return torch.equal(a, b) if exact else torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def _check_runs(root: Path, strategy: str, exact: bool = True, world: int = 2) -> None:
    """``exact``: bitwise (CPU); GPU kernels may reorder sums, so there the runs agree to rounding."""
    straight, resumed = root / f"{strategy}-straight", root / f"{strategy}-resumed"
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["processes"] == world and summary["steps"] == STEPS and summary["frozen_unchanged"]
    assert summary["strategy"] == strategy
    # Resume is exact: the same losses, weights and optimizer state as the run that never stopped.
    assert _same(torch.tensor(_losses(resumed)), torch.tensor(_losses(straight)), exact)
    one, two = _adapter(straight), _adapter(resumed)
    assert one.keys() == two.keys() and all(_same(one[k], two[k], exact) for k in one)
    a, b = _checkpoint(straight, STEPS), _checkpoint(resumed, STEPS)
    for index, entry in a["optimizer"]["state"].items():
        for key, value in entry.items():
            assert _same(value, b["optimizer"]["state"][index][key], exact), (strategy, index, key)
    # The exported adapter holds the gathered trained weights (every one of them, whole).
    trained = a["trainable"]
    assert set(trained) <= set(one)
    assert all(torch.equal(one[k], trained[k]) for k in trained)
    assert all(tuple(v.shape) == tuple(one[k].shape) for k, v in trained.items())


@pytest.fixture(scope="module")
def cpu_runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sharded")
    _run_all(root, "cpu")
    return root


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_cpu_processes_resume_exactly_and_export_the_gathered_adapter(cpu_runs, strategy):
    _check_runs(cpu_runs, strategy)


def test_fsdp2_computes_the_ddp_run(cpu_runs):
    # Reduce-scatter and all-reduce sum in different orders: equal to float rounding, not bitwise.
    fsdp_losses, ddp_losses = _losses(cpu_runs / "fsdp2-straight"), _losses(cpu_runs / "ddp-straight")
    torch.testing.assert_close(torch.tensor(fsdp_losses), torch.tensor(ddp_losses), rtol=1e-5, atol=1e-6)
    ddp, fsdp = _adapter(cpu_runs / "ddp-straight"), _adapter(cpu_runs / "fsdp2-straight")
    for key in ddp:  # Adam's 1/sqrt(v) magnifies last-bit gradient differences where v ~ 0: bound well below lr
        torch.testing.assert_close(fsdp[key], ddp[key], rtol=0, atol=1e-4)
    ddp_ckpt, fsdp_ckpt = _checkpoint(cpu_runs / "ddp-straight", STEPS), _checkpoint(cpu_runs / "fsdp2-straight", STEPS)
    assert ddp_ckpt["trainable"].keys() == fsdp_ckpt["trainable"].keys()  # one checkpoint format for both
    assert ddp_ckpt["optimizer"]["state"].keys() == fsdp_ckpt["optimizer"]["state"].keys()
    hashes = [json.loads((cpu_runs / f"{s}-straight" / "summary.json").read_text())["frozen_hashes"] for s in STRATEGIES]
    assert hashes[0] == hashes[1]  # the whole frozen weights, gathered, hash as the unsharded ones


def test_a_sharded_checkpoint_resumes_as_ddp(cpu_runs):
    crossed, sharded = _adapter(cpu_runs / "fsdp2-to-ddp"), _adapter(cpu_runs / "fsdp2-straight")
    for key in sharded:
        torch.testing.assert_close(crossed[key], sharded[key], rtol=0, atol=1e-4)
    after = torch.tensor(_losses(cpu_runs / "fsdp2-straight")[EVERY:])
    torch.testing.assert_close(torch.tensor(_losses(cpu_runs / "fsdp2-to-ddp")), after, rtol=1e-5, atol=1e-6)


def test_a_non_finite_shard_stops_every_process(cpu_runs):
    first, last = (cpu_runs / "non-finite-0.txt").read_text(), (cpu_runs / "non-finite-1.txt").read_text()
    assert "not writing the checkpoint" in first and "(on another process)" in first
    assert "not writing the checkpoint" in last and "(on another process)" not in last
    assert not (cpu_runs / "fsdp2-nan" / "checkpoints").exists() or not any((cpu_runs / "fsdp2-nan" / "checkpoints").iterdir())


def test_fsdp2_trains_in_bf16(cpu_runs):
    bf16, fp32 = _losses(cpu_runs / "fsdp2-bf16"), _losses(cpu_runs / "fsdp2-straight")[:EVERY]
    torch.testing.assert_close(torch.tensor(bf16), torch.tensor(fp32), rtol=1e-2, atol=0)
    assert bf16 != fp32  # the UNet did run in bf16


# -- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "env", "expected"),
    [
        ({"distributed": {"strategy": "zero2"}}, {}, "distributed.strategy zero2: DeepSpeed ZeRO needs CUDA GPUs"),
        ({"distributed": {"strategy": "zero3"}}, {}, "distributed.strategy zero3: DeepSpeed ZeRO needs CUDA GPUs"),
        ({}, {"ACCELERATE_USE_DEEPSPEED": "true"}, "accelerate's DeepSpeed was asked for .*set distributed.strategy=zero2"),
        ({}, {"ACCELERATE_USE_FSDP": "true"}, "set distributed.strategy=fsdp2"),
        ({"distributed": {"strategy": "fsdp2"}}, {}, "fsdp2 needs processes started by a launcher"),
    ],
)
def test_an_engine_that_cannot_run_as_asked_is_refused_in_one_line(tmp_path, monkeypatch, changes, env, expected):
    from motionkit.train.config import DistributedConfig

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if "distributed" in changes:
        changes = {"distributed": DistributedConfig(**changes["distributed"])}
    with pytest.raises(MotionkitError, match=expected) as err:
        make_trainer(tmp_path, max_steps=1, cpu=True, **changes).setup()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"validation.every": 5}, "validation.every needs the whole UNet"),
        ({"ema": True}, "ema keeps a whole copy"),
        ({"distributed.strategy": "zero4"}, "is not one of ddp, fsdp2, zero2, zero3"),
    ],
)
def test_sharded_config_refuses_what_needs_whole_weights(tmp_path, changes, expected):
    from motionkit.train.config import TrainConfig

    overrides = [f"{k}={v}" for k, v in {"distributed.strategy": "fsdp2", **changes}.items()]
    with pytest.raises(MotionkitError, match=expected) as err:
        TrainConfig().with_overrides(overrides)
    assert "\n" not in str(err.value)


# -- GPU --------------------------------------------------------------------------------------------


GPU_WORLD = min(2, torch.cuda.device_count())  # one process per GPU (NCCL); one GPU: one sharding process


@pytest.fixture(scope="module")
def gpu_runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sharded-gpu")
    _run_all(root, "cuda", GPU_WORLD)
    return root


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_gpus_resume_and_export_the_gathered_adapter(gpu_runs, strategy):
    _check_runs(gpu_runs, strategy, exact=False, world=GPU_WORLD)
