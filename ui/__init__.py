"""Gradio wiring of the app: ``build_app`` lays out the Rate, Analyst and Admin views and wires their
events to ``annotation`` services. No SQL and no tensor maths here.

- ``context``  session factory, engines, worker; the caller's account and role from ``gr.Request``; ``refuse``:
               a refused request is a message in the page and one log line, not a traceback
- ``rate``     the rater's picker; ``analyst`` overview, per-image votes, ensembles, exports; ``admin``
- ``render``   HTML of images (lossless PNG, nearest-neighbour), grids, heat-maps, bars, progress bars
- ``worker``   the background bank worker (one thread, one torch thread, a queue)
- ``preview``  the engine's bank preview page (``python -c "from ui.preview import build; build().launch()"``)
"""

from .app import build_app
from .context import AppContext, EngineRegistry
from .render import CSS
from .rate import KEYS_JS
from .worker import BankWorker

__all__ = ["build_app", "AppContext", "EngineRegistry", "BankWorker", "CSS", "KEYS_JS"]
