"""The evaluation library (no commands here; ``python -m sr_engine evaluate`` is in :mod:`sr_engine.cli`):
shared table columns (:mod:`.tables`), pictures (:mod:`.figures`), digits (:mod:`.digits`) with the digit judge
(:mod:`.judge`), plates (:mod:`.plates`) with the plate reader (:mod:`.reader`)."""
