"""sr_engine: banks of high-resolution samples that all downsample back to the low-resolution input.

Public API (docs/design.md):

    from sr_engine import load_engine, list_models
    eng = load_engine("mnist-x4")
    bank = eng.sample_bank(lr, n=64, steps=8, seed=0)
    rep = eng.ensemble(bank.images[[0, 3, 5]], lr)
"""

from .engines.base import MODES, Bank, Mode, SREngine, sample_seeds
from .engines.diffusers_engine import DiffusersEngine
from .engines.flow_engine import FlowEngine
from .engines.registry import list_models, load_engine
from .ensemble import EnsembleReport

__version__ = "0.1.0"
__all__ = ["load_engine", "list_models", "Bank", "EnsembleReport", "FlowEngine", "DiffusersEngine", "SREngine",
           "MODES", "Mode", "sample_seeds", "__version__"]
