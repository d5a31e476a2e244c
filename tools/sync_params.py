"""Rewrite each notebook's parameters cell from its chapter's Params (``python tools/sync_params.py [CH ...]``)."""
import json
import sys
from pathlib import Path

from bnlib import book, chapters, config

for name in sys.argv[1:] or book.toc_chapters():
    path = Path(book.NOTEBOOKS) / f"{name}.ipynb"
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    text = config.params_cell(chapters.module(name).Params)
    lines = text.split("\n")
    cell["source"] = [ln + "\n" for ln in lines[:-1]] + [lines[-1]]
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    print("synced", path)
