"""Build `src/folkrnn/data/tune_types.json`: what each tune type looks like in the open corpus.

    .venv/bin/python scripts/tune_types.py [-o src/folkrnn/data/tune_types.json]

Reads the ABC files of music21's British Isles collections (O'Neill's 1850, Ryan's
Mammoth, Aird's Airs, miscFolk) with folkrnn's own reader and groups the tunes by their
`R:` (rhythm) field: `Reel`, `reel`, `REEL` are one type; `double jig` is a jig; `slipjig`
a slip jig; a clog is played as a hornpipe. For each type of `folkrnn generate --type`:

- `meter`, `form`: what a session player asking for the type expects (a reel is 4/4
  AABB); `corpus_meter`, `corpus_form`: what its tagged tunes most often have (old
  collections write many hornpipes in 2/4, and many tunes without repeat marks);
- `bars`: its tagged tunes' most common section length (8 where none);
- `bias`: the rhythmic feel, one number per rhythm token (durations, broken rhythm,
  tuplets): log of how much more often the type uses it per token than all the corpus's
  tunes of the same meter (add-one smoothed, clipped to +-`CLIP`). Sampling adds it to
  the logits, a product of the model and the type's rhythm: where fewer than
  `MIN_TAGGED` tunes are tagged, the type has no bias (its feel is the meter's own);
- `hallmarks`: rhythm figures per bar of its tagged tunes (what `--type` is measured
  against, docs/generate.md).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

from folkrnn.abc.reader import read_abc
from folkrnn.evaluate.tune import analyse_tune
from folkrnn.tokens import kind

COLLECTIONS = ("oneills1850", "ryansMammoth", "airdsAirs", "miscFolk")
MIN_TAGGED = 20
CLIP = 2.0
RHYTHM_KINDS = ("duration", "broken", "tuplet")

# --type name -> the R: spellings it covers (lower case, spaces and hyphens removed)
TYPES = {
    "reel": ("reel",),
    "jig": ("jig", "doublejig"),
    "slip-jig": ("slipjig",),
    "hornpipe": ("hornpipe", "clog"),
    "polka": ("polka",),
    "slide": ("slide",),
    "waltz": ("waltz",),
    "march": ("march",),
    "air": ("air", "slowair"),
}
# Where too few tunes are tagged: the meter and form session musicians expect.
CONVENTION = {
    "reel": ("M:4/4", "AABB"), "jig": ("M:6/8", "AABB"), "slip-jig": ("M:9/8", "AABB"),
    "hornpipe": ("M:4/4", "AABB"), "polka": ("M:2/4", "AABB"), "slide": ("M:12/8", "AABB"),
    "waltz": ("M:3/4", "AABB"), "march": ("M:2/4", "AABB"), "air": ("M:3/4", "AB"),
}
_R_FIELD = re.compile(r"^[ \t]*R:[ \t]*(.*)$")


def normalise(r: str) -> str | None:
    key = re.sub(r"[\s\-_]+", "", r.split("%", 1)[0].lower())
    return next((name for name, spellings in TYPES.items() if key in spellings), None)




def corpus_tunes(files: list[Path]):
    """(tokens, R: field or None) of every accepted tune of the files."""
    for path in files:
        text = path.read_text("utf-8", "replace")  # read once: the reader and the R: lookup share it
        tunes = list(read_abc(text, str(path)))
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        for k, t in enumerate(tunes):
            if t.tokens is None:
                continue
            end = tunes[k + 1].line if k + 1 < len(tunes) else len(lines) + 1
            r = None
            for text in lines[t.line - 1 : end - 1]:
                m = _R_FIELD.match(text)
                if m:
                    r = m.group(1).strip()
                    break
            yield list(t.tokens), r


def hallmarks(tunes: list[list[str]]) -> dict:
    """Rhythm figures per bar (bars as `folkrnn evaluate` counts them)."""
    bars = sum(max(1, analyse_tune(t).bars) for t in tunes)
    c = Counter(kind(x) for t in tunes for x in t)
    broken = sum(1 for t in tunes for x in t if kind(x) == "broken")
    return {
        "tunes": len(tunes),
        "broken_per_bar": round(broken / bars, 4),
        "durations_per_bar": round(c["duration"] / bars, 4),
        "notes_per_bar": round(c["pitch"] / bars, 4),
        "tuplets_per_bar": round(c["tuplet"] / bars, 4),
    }


def build(files: list[Path]) -> dict:
    by_type: dict[str, list[list[str]]] = defaultdict(list)
    by_meter: dict[str, list[list[str]]] = defaultdict(list)
    for toks, r in corpus_tunes(files):
        by_meter[toks[0]].append(toks)
        name = normalise(r) if r else None
        if name:
            by_type[name].append(toks)
    out = {}
    for name in TYPES:
        tagged = by_type.get(name, [])
        meter, form = CONVENTION[name]  # what a player asking for the type expects
        seen_meter = seen_form = None
        if tagged:
            seen_meter = Counter(t[0] for t in tagged).most_common(1)[0][0]
            forms = Counter(analyse_tune(t).pattern for t in tagged)
            seen_form = next((f for f, _ in forms.most_common() if f), None)
        own = [t for t in tagged if t[0] == meter]
        bias = {}
        if len(own) >= MIN_TAGGED:
            mine = Counter(x for t in own for x in t)
            all_m = Counter(x for t in by_meter[meter] for x in t)
            n_mine, n_all = sum(mine.values()), sum(all_m.values())
            for tok in sorted(set(mine) | set(all_m)):
                if kind(tok) in RHYTHM_KINDS:
                    b = math.log((mine[tok] + 1) / (n_mine + 1)) - math.log((all_m[tok] + 1) / (n_all + 1))
                    if abs(b) >= 0.05:
                        bias[tok] = round(max(-CLIP, min(CLIP, b)), 3)
        bars = Counter(s.bars for t in own for s in analyse_tune(t).sections).most_common(1)
        out[name] = {
            "meter": meter, "form": form, "bars": bars[0][0] if bars and bars[0][0] in (8, 16) else 8,
            "basis": "R: fields" if bias else "meter", "tagged": len(tagged), "tagged_in_meter": len(own),
            "corpus_meter": seen_meter, "corpus_form": seen_form, "bias": bias,
            "hallmarks": hallmarks(own) if own else None,
            "meter_hallmarks": hallmarks(by_meter[meter]) if by_meter.get(meter) else None,
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", type=Path, default=Path("src/folkrnn/data/tune_types.json"))
    args = ap.parse_args()
    from folkrnn.corpus import _music21_files

    files: list[Path] = []
    for name in COLLECTIONS:
        found = _music21_files(name)
        if found is None:
            raise SystemExit(f"music21 collection {name} not found")
        files += sorted(found[0])
    types = build(files)
    import music21

    doc = {"format": "folkrnn-tune-types", "version": 1,
           "source": f"music21 {music21.__version__} collections {', '.join(COLLECTIONS)}: R: fields",
           "made_by": "scripts/tune_types.py", "min_tagged": MIN_TAGGED, "clip": CLIP, "types": types}
    args.out.write_text(json.dumps(doc, indent=1) + "\n", "utf-8")
    for name, t in types.items():
        h = t["hallmarks"] or {}
        print(f"{name:9s} {t['meter']:7s} {t['form']:6s} {t['bars']:2d} bars  {t['basis']:10s} tagged {t['tagged']:4d} "
              f"({t['tagged_in_meter']} in {t['meter']}; most in {t['corpus_meter']}, form {t['corpus_form']})  "
              f"broken/bar {h.get('broken_per_bar', '-')}  bias on {len(t['bias'])} tokens", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
