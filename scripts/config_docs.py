"""Write docs/config.md from the config schema: python scripts/config_docs.py (from anywhere).

This checkout's src/ comes first on the path, so the file describes the schema next to it, not an installed copy.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from toxdistill.config_docs import render_config_docs  # noqa: E402  (after the path is set)

if __name__ == "__main__":
    out = ROOT / "docs" / "config.md"
    out.write_text(render_config_docs(), encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)}")
