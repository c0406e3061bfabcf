"""Rewrite notebook cell sources (never outputs) with regular expressions: a refactor's call sites.

    python tools/edit_notebook_sources.py            # apply the rewrites below to notebooks/
"""
import json
import re
import sys
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

# (pattern, replacement): options after the data arguments are keyword-only
REWRITES = [
    (r"(?m)^(.*?tk\.run_strategy\()([^,()]+, [^,()]+, [^,()]+, 10,) ([^,()*]+?\.weights_path)",
     lambda m: f"{m[1]}{m[2]}\n{' ' * len(m[1])}source_weights={m[3]}"),
    (r"tk\.fine_tune\((\w+), (\w+), ([\w.]+), 8, 6,", r"tk.fine_tune(\1, \2, \3, head_epochs=8, finetune_epochs=6,"),
]


def rewrite(text, rewrites=REWRITES):
    for pattern, replacement in rewrites:
        text = re.sub(pattern, replacement, text)
    return text


def main(paths):
    for path in paths:
        raw = path.read_text(encoding="utf-8")
        nb = json.loads(raw)
        changed = 0
        for cell in nb["cells"]:
            old = "".join(cell["source"])
            new = rewrite(old)
            if new != old:
                cell["source"] = new.splitlines(keepends=True)
                changed += 1
        if changed:
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"{path.name}: {changed} cell(s)")


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]] or sorted(NOTEBOOKS.glob("*.ipynb")))
