"""Annotation services (banks, raters, top-k votes, consensus, agreement, exports): issue 3, not built yet.

Layering (../shared/DESIGN.md): ``app.py`` / ``ui`` -> ``annotation`` -> ``db``; ``annotation`` -> ``sr_engine``.
"""
