"""Generation speed: our sampler at batch 1 and batch 512 against a plain numpy sampler.

    .venv/bin/python bench/sample.py [-m MODEL] [--length 200] [--batch 512] [--threads 2]

The numpy sampler is what the original `sample-rnn-fast` did: one tune at a time,
the whole network step per token as numpy matmuls (one-hot input included), a draw
with `rng.choice`. Ours: folkrnn.sample (state carried, gathered input columns,
continuous batching). All three run the same weights: a random v2-size model whose
`</s>` is suppressed so that every tune is exactly `--length` tokens (or, with -m, a
real model with its natural lengths, capped at --length).

Prints tokens/s, ms/token, tunes/s, ratios, and the projection for the 30,000-tune
"ten volumes" (the v2 samples average 144 tokens a tune). Targets on the 2-core CPU:
>= 30 tunes/s batched, <= 1.5 ms per token at batch 1.

--variants also runs our sampler with `precision` int8 (batch 1) and bf16 / int8
(batch --batch), times the bare network step at batch 1 and at --batch: the fused
LSTM kernel (`FolkRNN.step`, oneDNN on and off), our `Stepper` in float32, bfloat16
(AMX) and dynamic int8, and prints how far the bf16 and int8 next-token
distributions drift from float32 over 100 steps (max |dp|, mean KL).
On a busy machine use --threads 1 (two threads wait for a core, up to 10x slower).

--form AABB times free sampling against sampling in that form (`--form`, its default
candidates, lookahead and closing temperature) on the same model (use -m default: a
real model's tunes end where the plan lets them), --form-tunes each, batch --batch,
and prints the ratio of tunes/s (target: the form >= 1/3 of free).

--hooks prints, side by side, the fast path (`Stepper`), the hooked step with no hook,
with one ablation hook (unit 12 of layer 3's h set to 0 in every row at every step),
and with a `Recorder` keeping layer 3's h in float16: tunes/s at --hook-batch (256)
and ms/token at batch 1 (target: one hook >= 0.5x the fast path at batch 256).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# bench/ holds scripts named like standard modules (tokenize.py): keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if "--threads" in sys.argv:  # numpy's BLAS reads its thread count at import: same budget for both sides
    import os

    _n = sys.argv[sys.argv.index("--threads") + 1]
    os.environ.setdefault("OPENBLAS_NUM_THREADS", _n)
    os.environ.setdefault("OMP_NUM_THREADS", _n)
    os.environ.setdefault("MKL_NUM_THREADS", _n)

import numpy as np
import torch

from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.sample import SampleConfig, Stepper, sample
from folkrnn.vocab import Vocabulary

V2_MEAN_TOKENS = 144  # mean tokens per tune (with </s>) of the 64 real v2 samples


def numpy_sampler(model: FolkRNN, vocab: Vocabulary, n: int, length: int, seed: int) -> int:
    """One tune at a time, a full numpy step per token; returns tokens generated."""
    W = []
    for layer in model.layers:
        W.append((layer.weight_ih.detach().numpy().T.copy(), layer.weight_hh.detach().numpy().T.copy(),
                  layer.bias.detach().numpy().copy(), layer.h0.detach().numpy().copy(), layer.c0.detach().numpy().copy()))
    Wo, bo = model.out.weight.detach().numpy().T.copy(), model.out.bias.detach().numpy().copy()
    V = len(vocab)
    eye = np.eye(V, dtype=np.float32)
    rng = np.random.default_rng(seed)
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    total = 0
    for _ in range(n):
        h = [w[3].copy() for w in W]
        c = [w[4].copy() for w in W]
        tok = vocab.bos
        for _t in range(length):
            x = eye[tok]
            for l, (wi, wh, b, _, _) in enumerate(W):
                pre = x @ wi + h[l] @ wh + b
                H = wh.shape[0]
                i, f, g, o = sig(pre[:H]), sig(pre[H : 2 * H]), np.tanh(pre[2 * H : 3 * H]), sig(pre[3 * H :])
                c[l] = f * c[l] + i * g
                h[l] = o * np.tanh(c[l])
                x = h[l]
            z = x @ Wo + bo
            p = np.exp(z - z.max())
            p /= p.sum()
            tok = int(rng.choice(V, p=p))
            total += 1
            if tok == vocab.eos:
                break
    return total


def ours(model, vocab, n: int, batch: int, length: int, seed: int, precision: str = "fp32") -> int:
    cfg = SampleConfig(num_tunes=n, seed=seed, batch_size=batch, max_length=length, precision=precision)
    return sum(t.length for t in sample(model, vocab, cfg))


def stepper_rate(step: Stepper, batch: int, steps: int) -> float:
    """Raw network steps (no sampling) per second at `batch`: for the precision variants."""
    ids = torch.zeros(batch, dtype=torch.long)
    state = step.initial_state(batch)
    with torch.inference_mode():
        step(ids, state)
        t = time.perf_counter()
        for _ in range(steps):
            _, state = step(ids, state)
        return steps * batch / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default=None, help="a model (default: random v2-size weights, fixed-length tunes)")
    ap.add_argument("--length", type=int, default=200, help="tokens per tune (cap with -m)")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--batched-tunes", type=int, default=1024, help="tunes for the batched run")
    ap.add_argument("--single-tunes", type=int, default=5, help="tunes for our batch-1 run")
    ap.add_argument("--numpy-tunes", type=int, default=3, help="tunes for the numpy run")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--variants", action="store_true", help="also time the network step variants (see above)")
    ap.add_argument("--hooks", action="store_true", help="only the hooked-sampling table (see above)")
    ap.add_argument("--hook-batch", type=int, default=256)
    ap.add_argument("--hook-tunes", type=int, default=256, help="tunes for each batched run of --hooks")
    ap.add_argument("--form", default=None, metavar="PARTS", help="only the free-vs-form table (see above)")
    ap.add_argument("--form-tunes", type=int, default=300)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    vocab = Vocabulary.v2()
    if args.model:
        from folkrnn.load import load_model

        ck = load_model(args.model)
        model, vocab = ck.model, ck.vocab
        what = f"model {args.model}, natural lengths capped at {args.length}"
    else:
        torch.manual_seed(0)
        model = FolkRNN(ModelConfig()).eval()
        with torch.no_grad():
            model.out.bias[vocab.eos] = -1e4  # every tune runs to the cap: a fixed token budget
        what = f"random v2-size model, {args.length} tokens a tune"
    print(f"folkrnn sampler benchmark: {what}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.hooks:
        return hooks_table(model, vocab, args)
    if args.form:
        return form_table(model, vocab, args)

    rows = []
    t = time.perf_counter()
    n_tok = ours(model, vocab, args.single_tunes, 1, args.length, 1)
    rows.append(("ours, batch 1", args.single_tunes, n_tok, time.perf_counter() - t))
    t = time.perf_counter()
    n_tok = ours(model, vocab, args.batched_tunes, args.batch, args.length, 2)
    rows.append((f"ours, batch {args.batch}", args.batched_tunes, n_tok, time.perf_counter() - t))
    if args.variants:
        import warnings

        warnings.filterwarnings("ignore")  # PyTorch's deprecation notices for quantised tensors
        for prec, batch, n in (("int8", 1, args.single_tunes), ("bf16", args.batch, args.batched_tunes), ("int8", args.batch, args.batched_tunes)):
            t = time.perf_counter()
            n_tok = ours(model, vocab, n, batch, args.length, 2, prec)
            rows.append((f"ours {prec}, batch {batch}", n, n_tok, time.perf_counter() - t))
    t = time.perf_counter()
    n_tok = numpy_sampler(model, vocab, args.numpy_tunes, args.length, 3)
    rows.append(("numpy, one at a time", args.numpy_tunes, n_tok, time.perf_counter() - t))

    print(f"{'sampler':<24} {'tunes':>6} {'tokens':>8} {'seconds':>8} {'tokens/s':>9} {'ms/token':>9} {'tunes/s':>8} {'vs numpy':>9}")
    base = rows[-1][2] / rows[-1][3]
    for name, n, tok, sec in rows:
        rate = tok / sec
        print(f"{name:<24} {n:>6} {tok:>8} {sec:>8.2f} {rate:>9.0f} {1000 / rate:>9.3f} {n / sec:>8.2f} {rate / base:>8.1f}x")
    batched_rate = rows[1][2] / rows[1][3]
    per_tune = rows[1][2] / rows[1][1]
    print(f"batched: {batched_rate / per_tune:.1f} tunes/s at {per_tune:.0f} tokens a tune; "
          f"{batched_rate / V2_MEAN_TOKENS:.1f} tunes/s at the v2 mean of {V2_MEAN_TOKENS}; "
          f"30,000 such tunes in {30000 * V2_MEAN_TOKENS / batched_rate / 60:.1f} min (target >= 30 tunes/s, < 17 min)")
    print(f"batch 1: {1000 * rows[0][3] / rows[0][2]:.3f} ms/token (target <= 1.5)")

    if args.variants:
        fused = _Callable(lambda ids, st: model.step(ids, st), Stepper(model))
        variants = [("fused kernel", fused, None), ("fused, oneDNN off", fused, False), ("Stepper fp32", Stepper(model), None),
                    ("Stepper bf16", Stepper(model, "bf16"), None), ("Stepper int8", Stepper(model, "int8"), None)]
        print("network step only (tokens/s):")
        for batch, steps in ((1, 300), (args.batch, 10)):
            cells = []
            for name, s, mkl in variants:
                old = torch.backends.mkldnn.enabled
                if mkl is not None:
                    torch.backends.mkldnn.enabled = mkl
                cells.append(f"{name} {stepper_rate(s, batch, steps):.0f}")
                torch.backends.mkldnn.enabled = old
            print(f"  batch {batch}: " + ", ".join(cells))
        for name, s, _ in variants[3:]:
            md, kl = drift(Stepper(model), s, vocab)
            print(f"  {name} vs fp32 over 100 steps: max |dp| {md:.4f}, mean KL {kl:.5f} nats")
    return 0


def form_table(model, vocab, args) -> int:
    """Free sampling against sampling in a form, same model, seed and batch."""
    from folkrnn.sample import Form

    rows = []
    for name, form in (("free", None), (f"--form {args.form}", Form.parse(args.form))):
        cfg = SampleConfig(num_tunes=args.form_tunes, seed=4, batch_size=args.batch, max_length=max(args.length, 1000),
                           form=form)
        t = time.perf_counter()
        tok = sum(x.length for x in sample(model, vocab, cfg))
        rows.append((name, tok, time.perf_counter() - t))
    print(f"{'sampler':<24} {'tunes':>6} {'tokens':>8} {'seconds':>8} {'tunes/s':>8} {'vs free':>8}")
    base = args.form_tunes / rows[0][2]
    for name, tok, sec in rows:
        print(f"{name:<24} {args.form_tunes:>6} {tok:>8} {sec:>8.2f} {args.form_tunes / sec:>8.2f} {args.form_tunes / sec / base:>7.2f}x")
    print(f"the form costs {rows[0][2] and rows[1][2] / rows[0][2]:.2f}x the time of free sampling (target: <= 3x)")
    return 0


def hooks_table(model, vocab, args) -> int:
    """Fast path against the hooked step without hooks, with an ablation, with a float16 recorder."""
    from folkrnn.hooks import Recorder, hook_name

    top = len(model.layers)
    h_top = hook_name("h", layer=top)

    def ablate(value, ctx):
        value[:, 12] = 0.0  # the whole batch at once, in place: one call per step
        return value

    def variants():
        yield "fast (Stepper)", None
        yield "hooked, no hook", []
        yield "hooked, 1 ablation", [(h_top, ablate)]
        yield f"hooked, record h{top} fp16", Recorder(torch.float16).hooks([h_top])

    rows = []
    for name, hooks in variants():
        cells = []
        for batch, n in ((args.hook_batch, args.hook_tunes), (1, args.single_tunes)):
            cfg = SampleConfig(num_tunes=n, seed=4, batch_size=batch, max_length=args.length)
            t = time.perf_counter()
            tok = sum(tn.length for tn in sample(model, vocab, cfg, hooks=hooks))
            sec = time.perf_counter() - t
            cells.append((n / sec, 1000 * sec / tok))
        rows.append((name, cells[0][0], cells[1][1]))
    fast = rows[0][1]
    print(f"{'sampler':<26} {f'tunes/s @{args.hook_batch}':>14} {'vs fast':>8} {'ms/token @1':>12}")
    for name, tps, ms in rows:
        print(f"{name:<26} {tps:>14.2f} {tps / fast:>7.2f}x {ms:>12.3f}")
    ok = rows[2][1] >= 0.5 * fast
    print(f"target: hooked with one hook >= 0.5x fast at batch {args.hook_batch}: {'met' if ok else 'NOT met'}")
    return 0


def drift(ref, other, vocab, batch: int = 8, steps: int = 100) -> tuple[float, float]:
    """How far `other`'s next-token distributions drift from `ref`'s, fed the same random tokens."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, len(vocab), (batch, steps), generator=g)
    sr, so = ref.initial_state(batch), other.initial_state(batch)
    md = kl = 0.0
    with torch.inference_mode():
        for t in range(steps):
            lr, sr = ref(ids[:, t], sr)
            lo, so = other(ids[:, t], so)
            pr, po = torch.log_softmax(lr.double(), -1), torch.log_softmax(lo.double(), -1)
            md = max(md, float((pr.exp() - po.exp()).abs().max()))
            kl += float((pr.exp() * (pr - po)).sum(-1).mean()) / steps
    return md, kl


class _Callable:
    def __init__(self, fn, base: Stepper):
        self.fn, self.base = fn, base

    def __call__(self, ids, state):
        return self.fn(ids, state)

    def initial_state(self, batch: int):
        return self.base.initial_state(batch)


if __name__ == "__main__":
    raise SystemExit(main())
