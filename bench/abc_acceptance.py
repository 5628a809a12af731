"""Do ABC programs accept what folkrnn writes? Failures per program on generated tunes.

Generates tunes (from a checkpoint, or from an untrained tiny model, whose output is
close to uniformly random tokens: the hardest case), writes each as the CLI does
(`tokens_to_abc`, which repairs what ABC cannot say), and counts the tunes that
each program rejects:

- abc2midi (Debian abcmidi): an `Error` line for the tune;
- abcm2ps: an `error:` line for the tune;
- abcjs (node_modules, `ABCJS.parseOnly`): any parser warning for the tune;
- music21: an exception from `converter.parse` (on a sample: it runs ~10 tunes/s);
- folkrnn: the strict reader rejects the tune, or reads back other tokens than
  the repaired ones (`make_writable`).

    PYTHONPATH=src .venv/bin/python bench/abc_acceptance.py -m default -n 3000 -s 1
    PYTHONPATH=src .venv/bin/python bench/abc_acceptance.py -m tiny -n 3000 -s 1 --max-length 300
    ... --save-tokens raw.txt / --tokens raw.txt    (one raw sequence per line: generate once)

The per-program checks are also used by tests/test_abc_programs.py.
"""

from __future__ import annotations

import os
import sys

# bench/tokenize.py would shadow the standard library's `tokenize` for a script run from here.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse
import collections
import json
import re
import subprocess
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ABCJS = ROOT / "node_modules" / "abcjs" / "dist" / "abcjs-basic.js"

# One line of JSON per tune: its warnings, markup stripped.
_ABCJS_SCRIPT = r"""
const ABCJS = require(process.argv[1]);
const text = require('fs').readFileSync(0, 'utf8');
for (const t of ABCJS.parseOnly(text)) {
  const w = (t.warnings || []).map(s => String(s).replace(/<[^>]*>/g, ''));
  console.log(JSON.stringify(w));
}
"""

_ABC2MIDI_LINE = re.compile(r"^Error in line-char (\d+)-\d+ : (.*)$", re.M)
_ABCM2PS_LINE = re.compile(r"^[^:\n]*:(\d+):\d+: error: (.*)$", re.M)


def _tune_of_line(starts: Sequence[int], line: int) -> int:
    """Index of the tune holding 1-based `line`, given each tune's first line."""
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= line:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _join(abcs: Sequence[str]) -> tuple[str, list[int]]:
    """One file of tunes separated by blank lines, and the first line of each."""
    starts, line, parts = [], 1, []
    for a in abcs:
        starts.append(line)
        text = a.rstrip("\n") + "\n\n"
        parts.append(text)
        line += text.count("\n")
    return "".join(parts), starts


def _by_line(pattern: re.Pattern, out: str, starts: Sequence[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = collections.defaultdict(list)
    for m in pattern.finditer(out):
        found[_tune_of_line(starts, int(m.group(1)))].append(m.group(2).strip())
    return found


# abc2midi says "Error" for a repeat it must infer, then plays exactly what the tune
# means (its MIDI is byte for byte that of the tune with the repeat written out, see
# make_writable): these two are warnings, not rejections.
ABC2MIDI_RECOVERED = ("found [1 or like before |:", "Missing :| at end of tune")


def check_abc2midi(abcs: Sequence[str]) -> dict[int, list[str]]:
    """{tune index: abc2midi error messages} for the tunes abc2midi rejects (one run per
    tune: after some errors abc2midi skips the rest of a file)."""
    found: dict[int, list[str]] = {}
    with tempfile.TemporaryDirectory() as d:
        for i, abc in enumerate(abcs):
            (Path(d) / "t.abc").write_text(abc, "utf-8")
            p = subprocess.run(["abc2midi", "t.abc", "-o", "t.mid"], cwd=d, capture_output=True, text=True,
                               errors="replace")
            msgs = [m.group(2).strip() for m in _ABC2MIDI_LINE.finditer(p.stdout + p.stderr)]
            msgs = [m for m in msgs if m not in ABC2MIDI_RECOVERED]
            if p.returncode < 0:
                msgs.append(f"abc2midi crashed (signal {-p.returncode})")
            elif not (Path(d) / "t.mid").exists():
                msgs.append("abc2midi wrote no MIDI file")
            else:
                (Path(d) / "t.mid").unlink()
            if msgs:
                found[i] = msgs
    return found


def check_abcm2ps(abcs: Sequence[str]) -> dict[int, list[str]]:
    """{tune index: abcm2ps error messages} for the tunes abcm2ps rejects."""
    text, starts = _join(abcs)
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "t.abc").write_text(text, "utf-8")
        p = subprocess.run(["abcm2ps", "-q", "t.abc", "-O", "t.ps"], cwd=d, capture_output=True, text=True,
                           errors="replace")
    found = _by_line(_ABCM2PS_LINE, p.stdout + p.stderr, starts)
    if p.returncode < 0:
        for i in range(len(abcs)):
            found.setdefault(i, []).append(f"abcm2ps crashed (signal {-p.returncode})")
    return found


def check_abcjs(abcs: Sequence[str]) -> dict[int, list[str]]:
    """{tune index: abcjs parser warnings} for the tunes abcjs warns about."""
    text, _ = _join(abcs)
    p = subprocess.run(["node", "-e", _ABCJS_SCRIPT, str(ABCJS)], input=text, capture_output=True, text=True,
                       check=True)
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    if len(rows) != len(abcs):
        raise RuntimeError(f"abcjs found {len(rows)} tunes in {len(abcs)}")
    return {i: w for i, w in enumerate(rows) if w}


def check_music21(abcs: Sequence[str]) -> dict[int, list[str]]:
    """{tune index: exception} for the tunes music21's ABC parser fails on."""
    import music21

    found = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, a in enumerate(abcs):
            try:
                music21.converter.parse(a, format="abc")
            except Exception as e:  # noqa: BLE001 - any failure is a rejection
                found[i] = [f"{type(e).__name__}: {str(e)[:120]}"]
    return found


def check_folkrnn(abcs: Sequence[str], expected: Sequence[Sequence[str] | None]) -> dict[int, list[str]]:
    """{tune index: problem} where the strict reader rejects the tune or reads other tokens."""
    from folkrnn.abc import read_abc

    found = {}
    for i, (a, want) in enumerate(zip(abcs, expected)):
        results = list(read_abc(a))
        if len(results) != 1:
            found[i] = [f"read {len(results)} tunes"]
        elif results[0].tokens is None:
            found[i] = [f"rejected ({results[0].reason}): {results[0].detail}"]
        elif want is not None and list(results[0].tokens) != list(want):
            found[i] = ["read back other tokens"]
    return found


def generate(model: str, n: int, seed: int, max_length: int, batch_size: int) -> list[list[str]]:
    """Raw sampled sequences (no <s> </s>), exactly as the model drew them."""
    import torch

    from folkrnn.sample import SampleConfig, sample

    if model == "tiny":
        from folkrnn.model import FolkRNN, ModelConfig
        from folkrnn.vocab import Vocabulary

        net = FolkRNN(ModelConfig(hidden_size=32, num_layers=1))
        net.reset_parameters(torch.Generator().manual_seed(seed))
        net.eval()
        vocab = Vocabulary.v2()
    else:
        from folkrnn.load import load_model

        ckpt = load_model(model)
        net, vocab = ckpt.model, ckpt.vocab
    # Primed with any meter and mode, as `folkrnn generate` does by default.
    cfg = SampleConfig(num_tunes=n, seed=seed, max_length=max_length, batch_size=batch_size, prime=("M:*", "K:*"))
    return [t.tokens for t in sample(net, vocab, cfg)]


def write_all(seqs: Sequence[Sequence[str]]) -> tuple[list[str | None], list[list[str] | None]]:
    """Each sequence as the CLI writes it: its ABC (None if the writer refused) and
    the tokens the ABC should read back as (None if unknown)."""
    from folkrnn.abc import tokens_to_abc

    try:
        from folkrnn.abc.writer import make_writable
    except ImportError:  # an older writer: the sampler's own clean-up, then the writer
        make_writable = None
        from folkrnn.sample import drop_unwritable
    abcs: list[str | None] = []
    expected: list[list[str] | None] = []
    for i, toks in enumerate(seqs):
        try:
            if make_writable is None:
                kept, _ = drop_unwritable(toks)
                want = kept
            else:
                kept = list(toks)
                want, notes = make_writable(toks)
                if "this tune has no notes" in notes:
                    raise ValueError("no notes")
            abcs.append(tokens_to_abc(kept, x=i + 1, title=f"tune {i + 1}"))
            expected.append(want)
        except Exception:  # noqa: BLE001 - counted as not written
            abcs.append(None)
            expected.append(None)
    return abcs, expected


CHECKS = {"abc2midi": check_abc2midi, "abcm2ps": check_abcm2ps, "abcjs": check_abcjs, "music21": check_music21}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", default="default", help="checkpoint, `default`, or `tiny` (untrained)")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("-s", "--seed", type=int, default=1)
    ap.add_argument("--max-length", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--tokens", help="read raw sequences (one per line) instead of generating")
    ap.add_argument("--save-tokens", help="write the raw sequences here")
    ap.add_argument("--music21-sample", type=int, default=300, help="check music21 on the first N tunes")
    ap.add_argument("--show", type=int, default=3, help="example messages per program")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    if args.tokens:
        seqs = [line.split() for line in Path(args.tokens).read_text("utf-8").splitlines()]
    else:
        seqs = generate(args.model, args.n, args.seed, args.max_length, args.batch_size)
        if args.save_tokens:
            Path(args.save_tokens).write_text("".join(" ".join(s) + "\n" for s in seqs), "utf-8")
    print(f"{len(seqs)} tunes ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    abcs, expected = write_all(seqs)
    written = [i for i, a in enumerate(abcs) if a is not None]
    texts = [abcs[i] for i in written]
    rows = [("not written", len(seqs), len(seqs) - len(written), [])]
    for name, fn in CHECKS.items():
        t1 = time.perf_counter()
        subset = texts[: args.music21_sample] if name == "music21" else texts
        found = fn(subset) if subset else {}
        msgs = collections.Counter(re.sub(r"\d+", "N", m) for ms in found.values() for m in ms)
        rows.append((name, len(subset), len(found), msgs.most_common(args.show)))
        print(f"{name}: {time.perf_counter() - t1:.0f} s", file=sys.stderr)
    found = check_folkrnn(texts, [expected[i] for i in written])
    msgs = collections.Counter(re.sub(r"\d+", "N", m)[:80] for ms in found.values() for m in ms)
    rows.append(("folkrnn reader", len(texts), len(found), msgs.most_common(args.show)))
    print(f"| program | tunes checked | rejected | % |\n|---|---:|---:|---:|")
    for name, n, bad, _ in rows:
        print(f"| {name} | {n} | {bad} | {100 * bad / max(n, 1):.1f} |")
    for name, _, _, common in rows:
        for m, c in common:
            print(f"  {name}: {c} x {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
