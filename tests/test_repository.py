"""The repository stands on its own: nothing in it points to a file outside it, and the README stays an entry point."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"\.\./shared/|(?<![\w.])/work/|\bDESIGN\.md\b|\bSTYLE\.md\b")


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / f for f in out if f.endswith((".py", ".md", ".toml", ".cfg", ".ini", ".txt")) or f == ".ci/run"]


def test_nothing_points_outside_the_repository():
    hits = []
    for path in _tracked_text_files():
        if path.name == Path(__file__).name or not path.is_file():
            continue
        for no, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()[:100]}")
    assert not hits, "\n".join(hits)


def test_the_readme_is_an_entry_point():
    readme = ROOT / "README.md"
    assert readme.stat().st_size <= 12 * 1024
    for doc in re.findall(r"\]\((docs/[\w./-]+\.md)", readme.read_text()):
        assert (ROOT / doc).is_file(), doc
