"""sr_engine: banks of high-resolution samples that all downsample back to the low-resolution input.

Public API (../shared/DESIGN.md):

    from sr_engine import load_engine, list_models
    eng = load_engine("mnist-x4")
    bank = eng.sample_bank(lr, n=64, steps=8, seed=0)
    rep = eng.ensemble(bank.images[[0, 3, 5]], lr)
"""

from .bank import MODES, Bank, FlowEngine, SREngine, list_models, load_engine, sample_seeds
from .ensemble import EnsembleReport

__version__ = "0.1.0"
__all__ = ["load_engine", "list_models", "Bank", "EnsembleReport", "FlowEngine", "DiffusersEngine", "SREngine",
           "MODES", "sample_seeds", "__version__"]


def __getattr__(name: str):
    # DiffusersEngine on first use only, so that ``import sr_engine`` does not import diffusers' pipelines
    if name == "DiffusersEngine":
        from .diffusers_engine import DiffusersEngine

        return DiffusersEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
