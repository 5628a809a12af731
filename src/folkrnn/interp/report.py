"""`report.html` and `findings.json` from the analyses that ran.

The HTML is one self-contained file: inline CSS, figures as PNG data URIs, no script,
no network. It opens with the answers to the four questions (only those an analysis
answered; the others say no analysis of them ran), then each question's analyses, then
the parameter atlas. Every sentence comes from an analysis's `Result.sentences`.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from folkrnn.files import atomic_write, make_dir
from folkrnn.errors import FolkRNNError
from folkrnn.interp.registry import QUESTIONS, Context, Ran, merge_findings

FORMAT = "folkrnn-explain"
FORMAT_VERSION = 1


def _clean(x: Any) -> Any:
    """JSON-safe: non-finite floats -> None, tuples -> lists, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    return x


def model_summary(ctx: Context) -> dict:
    m = ctx.model
    meta = ctx.checkpoint.metadata
    return {
        "name": ctx.model_name,
        "config": m.config.to_dict(),
        "parameters": m.num_parameters(),
        "initial_states": m.num_parameters(include_initial_states=True) - m.num_parameters(),
        "source": meta.get("source", {}).get("kind") if isinstance(meta.get("source"), dict) else None,
        "file": meta.get("file"),
        "epoch": (meta.get("training") or {}).get("epoch") if isinstance(meta.get("training"), dict) else None,
    }


def build_findings(ctx: Context, ran: list[Ran]) -> dict:
    """The findings document: provenance, then each analysis's findings under its key."""
    doc: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model_summary(ctx),
        "counts": ctx.counts.to_json() if ctx.counts is not None else None,
        "config": {"quick": ctx.config.quick, "seed": ctx.config.seed, "controls": ctx.config.controls,
                   "permutations": ctx.config.permutations},
        "analyses": [{"name": r.analysis.name, "key": r.analysis.key, "seconds": round(r.seconds, 3),
                      **({"skipped": r.result.skipped} if r.result.skipped else {})} for r in ran],
    }
    findings = merge_findings(ran)
    clash = set(findings) & set(doc)
    if clash:
        raise ValueError(f"an analysis writes the reserved findings key {sorted(clash)[0]!r}")
    doc.update(findings)
    return _clean(doc)


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:980px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.6em}.meta{color:#555;font-size:.92em}.answer{background:#f4f7fb;border-left:4px solid #3b73b9;
padding:.6em 1em;margin:.8em 0}.answer.none{border-left-color:#bbb;color:#666}.q{font-weight:600}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.88em;color:#555}
table{border-collapse:collapse;font-size:.82em;margin:.8em 0;display:block;overflow-x:auto;max-height:32em}
th,td{border:1px solid #ddd;padding:.2em .5em;text-align:right;white-space:nowrap}th{background:#f3f3f3;position:sticky;top:0}
td:first-child,th:first-child{text-align:left}.caption{font-size:.88em;color:#555}.skipped{color:#8a5a00}
code{background:#f3f3f3;padding:0 .2em;border-radius:3px}
"""


def _md(text: str) -> str:
    """Escape, then turn `code` spans into <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _section(r: Ran) -> str:
    a, res = r.analysis, r.result
    out = [f'<h3 id="{html.escape(a.name)}">{html.escape(a.title)}</h3>']
    if res.skipped:
        out.append(f'<p class="skipped">Not run: {_md(res.skipped)}</p>')
        return "\n".join(out)
    for s in res.sentences:
        out.append(f"<p>{_md(s)}</p>")
    for f in res.figures:
        data = base64.b64encode(f.png).decode("ascii")
        out.append(f'<figure><img alt="{html.escape(f.title)}" src="data:image/png;base64,{data}">'
                   f"<figcaption><b>{html.escape(f.title)}.</b> {_md(f.caption)}</figcaption></figure>")
    for t in res.tables:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in t.header)
        body = "\n".join("<tr>" + "".join(f"<td>{_md(str(c))}</td>" for c in row) + "</tr>" for row in t.rows)
        out.append(f'<p class="caption"><b>{html.escape(t.title)}.</b> {_md(t.caption)}</p>'
                   f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>")
    return "\n".join(out)


def render_html(ctx: Context, ran: list[Ran], findings: dict) -> str:
    m = findings["model"]
    c = ctx.counts
    counts_line = (f"Training counts: {html.escape(c.source)} ({c.tunes or '?'} tunes, {c.total:,} tokens"
                   + ("; not the file the checkpoint records as its training data" if c.matches_training_data is False
                      else "; the checkpoint's recorded training data" if c.matches_training_data else "")
                   + ")") if c is not None else "Training counts: none (token-level results lack them; pass --corpus FILE)"
    cfg = m["config"]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>folkrnn explain: {html.escape(m['name'])}</title><style>{CSS}</style></head><body>",
        f"<h1>What the parameters of the model \u201c{html.escape(m['name'])}\u201d mean</h1>",
        f'<p class="meta">{cfg["num_layers"]} LSTM layers x {cfg["hidden_size"]} units, {cfg["vocab_size"]} tokens; '
        f"{m['parameters']:,} parameters (+{m['initial_states']:,} learned initial state). {counts_line}. "
        f"Layers are numbered 1-{cfg['num_layers']}; units are 0-based within a layer. "
        f"{'Quick mode (fewer control draws). ' if ctx.config.quick else ''}"
        f"Every number below was measured on this model; each comes with the control it is judged against.</p>",
        "<h2>The four questions</h2>",
    ]
    answers = findings.get("answers", {})
    for q, text in QUESTIONS.items():
        a = answers.get(q)
        if a:
            parts.append(f'<div class="answer"><p class="q">{q.upper()}. {html.escape(text)}</p><p>{_md(a)}</p></div>')
        else:
            parts.append(f'<div class="answer none"><p class="q">{q.upper()}. {html.escape(text)}</p>'
                         f"<p>No analysis of this question ran in this report.</p></div>")
    qs = [r for r in ran if r.analysis.section == "questions"]
    if qs:
        parts.append("<h2>Evidence for the answers</h2>")
        parts += [_section(r) for r in qs]
    atlas = [r for r in ran if r.analysis.section == "atlas"]
    if atlas:
        parts.append("<h2>Parameter atlas</h2>")
        parts += [_section(r) for r in atlas]
    secs = sum(r.seconds for r in ran)
    parts.append(f'<p class="meta">Written by <code>folkrnn explain</code>: {len(ran)} analyses in {secs:.0f} s; '
                 f"the numbers are in findings.json beside this file.</p></body></html>")
    return "\n".join(parts)


def write_report(out_dir: str | Path, ctx: Context, ran: list[Ran]) -> tuple[Path, Path]:
    """Write report.html and findings.json into `out_dir` (created); returns their paths."""
    out = make_dir(out_dir, "report directory")
    findings = build_findings(ctx, ran)
    text = json.dumps(findings, indent=1, ensure_ascii=False, allow_nan=False)
    page = render_html(ctx, ran, findings)
    jpath, hpath = out / "findings.json", out / "report.html"

    def writer(content: str):
        # atomic_write gives the file the umask's mode (or the replaced file's), not mkstemp's 0600
        return lambda tmp: Path(tmp).write_text(content, "utf-8")

    try:
        atomic_write(jpath, writer(text + "\n"))
        atomic_write(hpath, writer(page))
    except OSError as e:
        raise FolkRNNError(f"{out}: cannot write the report: {e.strerror or e}") from None
    return hpath, jpath


def explain(checkpoint, out_dir: str | Path, counts=None, config=None, model_name: str = "model",
            names: list[str] | None = None, progress: bool = False,
            corpus: str | Path | None = None) -> tuple[Path, Path, dict]:
    """Run the analyses on `checkpoint` and write the report: (report.html, findings.json, findings).

    `corpus`: a data_v2 tune file for the activation analyses (default: the file the
    counts come from, if any); without one they are skipped."""
    from folkrnn.interp.registry import ExplainConfig
    from folkrnn.interp.runner import run_analyses

    ctx = Context(checkpoint, counts, config or ExplainConfig(), model_name, corpus=corpus)
    ran = run_analyses(ctx, names, progress)
    h, j = write_report(out_dir, ctx, ran)
    return h, j, json.loads(j.read_text("utf-8"))
