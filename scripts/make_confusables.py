"""Write src/toxdistill/data/confusables.json, the front-end's fold table, from Unicode's confusables data.

    pip install confusable-homoglyphs==3.3.1 && python scripts/make_confusables.py

The table maps each letter of another script that Unicode lists as confusable with a Latin letter (Cyrillic "а",
Greek "ο", Cherokee "Ꭺ", ...) to that letter. Only letters (category L*) outside the Latin and Common scripts: the
fold turns look-alikes into Latin, never Latin into something else. Where Unicode's prototype has the other case
(Cyrillic "І" -> "l"), the Latin letter of the source's case that Unicode lists as confusable with it is taken
("I"), so that a capital stays a capital.
"""

import json
import sys
import unicodedata
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "toxdistill" / "data" / "confusables.json"


def _latin(entries: list[dict]) -> list[str]:
    return [e["c"] for e in entries if len(e["c"]) == 1 and e["c"].isascii() and e["c"].isalpha()]


def fold_table() -> dict[str, str]:
    from confusable_homoglyphs import categories
    from confusable_homoglyphs.confusables import confusables_data as data

    fold = {}
    for char, entries in sorted(data.items()):
        if len(char) != 1 or char.isascii() or not unicodedata.category(char).startswith("L"):
            continue
        if categories.alias(char) in ("LATIN", "COMMON"):
            continue
        latin = _latin(entries)
        if not latin:
            continue
        same_case = [t for t in latin if t.isupper() == char.isupper()]
        if not same_case:  # through the Latin letter's own confusables: "l" is listed beside "I"
            same_case = [u for u in map(chr, range(65, 91)) if set(latin) & set(_latin(data.get(u, [])))]
            same_case = same_case if char.isupper() else [u.lower() for u in same_case]
        fold[char] = (same_case or latin)[0]
    return fold


if __name__ == "__main__":
    table = fold_table()
    source = f"Unicode confusables via the PyPI package confusable-homoglyphs {version('confusable-homoglyphs')}"
    OUT.write_text(json.dumps({"source": source, "fold": table}, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(table)} characters", file=sys.stderr)
