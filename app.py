"""Start the app: ``python app.py [--host 127.0.0.1] [--port 7860]``.

Serves on the loopback address by default; nothing is fetched from the internet (no analytics, no share link).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    from ui.preview import build

    build().launch(server_name=a.host, server_port=a.port, share=False)


if __name__ == "__main__":
    main()
