"""Gradio wiring of the app (issue 4). Until then :mod:`ui.preview` shows the engine's banks."""
