"""Configs serialise themselves: to_dict gives plain values (tuples as lists, nested configs as dicts) that
survive JSON and torch.save(weights_only); from_dict rebuilds the same dataclass."""

import json

import pytest
import torch

from sr_engine.bench.config import BenchConfig, quick_config
from sr_engine.models.flow import FlowConfig
from sr_engine.models.kernel_diffusion import KernelDDPMConfig
from sr_engine.train import TrainConfig


@pytest.mark.parametrize("cfg", [FlowConfig(hr_size=(32, 128)), KernelDDPMConfig(block_out_channels=(8, 16, 32)),
                                 TrainConfig(flow={"hidden": 8}), BenchConfig(), quick_config("x")])
def test_round_trip_through_json_and_torch(cfg, tmp_path):
    d = cfg.to_dict()
    json.dumps(d)  # nothing but JSON types
    torch.save(d, tmp_path / "c.pt")
    back = type(cfg).from_dict(torch.load(tmp_path / "c.pt", weights_only=True))
    assert back.to_dict() == d
    if not isinstance(cfg, BenchConfig):  # (its overrides dicts keep lists: KernelDDPMConfig.from_dict types them)
        assert back == cfg and type(cfg).from_dict(json.loads(json.dumps(d))) == cfg


def test_nested_and_tuple_fields_come_back_typed():
    cfg = BenchConfig.from_dict(quick_config("x").to_dict())
    assert isinstance(cfg.scales, tuple) and isinstance(cfg.baselines.scales, tuple)
    assert cfg.baselines.export_dir == quick_config("x").baselines.export_dir
    assert isinstance(FlowConfig.from_dict({"hr_size": [8, 8]}).hr_size, tuple)


def test_unknown_fields_are_refused():
    with pytest.raises(ValueError, match="FlowConfig has no field"):
        FlowConfig.from_dict({"hr_size": [8, 8], "levels": 3})
