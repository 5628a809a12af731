"""The Q1 bar probes of `folkrnn explain` with their three controls, printed per layer state.

    python scripts/probe_controls.py MODEL CORPUS [PROBE_TUNES]

MODEL: a model spec (`default`, a .safetensors or Lasagne .pkl), or `random:H:SCALE` for a
Lasagne pickle of random N(0, SCALE^2) weights with H units (seed 7, as the tests build it).
The same call as the `bars` analysis (`behaviour._probe_set`, seed 0)."""
import sys, time, json
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "tests"))
import numpy as np
from folkrnn.load import load_model
from folkrnn.interp.context import Context, ExplainConfig
from folkrnn.interp import activity, behaviour as B

spec, corpus = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 300
if spec.startswith("random"):
    from test_legacy import folkrnn_dict, lasagne_params, py2_pickle, v2_token2idx
    H = int(spec.split(":")[1]); scale = float(spec.split(":")[2])
    path = f"/tmp/random_{H}_{scale}.pkl"
    open(path, "wb").write(py2_pickle(folkrnn_dict(lasagne_params(np.random.default_rng(7), 137, H, scale=scale), v2_token2idx())))
    spec = path
ck = load_model(spec)
ctx = Context(ck, None, ExplainConfig.make(False, 0), corpus=corpus, sizes=activity.Sizes(probe_tunes=n))
t0 = time.time()
data = activity.corpus_data(ctx)
t1 = time.time()
pset = B._probe_set(ctx, data, B._bar_labels(data), 100)
t2 = time.time()
print(f"teacher-forcing {t1-t0:.1f}s probes {t2-t1:.1f}s")
for name, p in pset.items():
    print(f"== {name}: chance {p['chance']:.3f} baseline {p['baseline']:.3f} control chance {p['control_chance']:.3f} test tokens {p['test_tokens']}")
    for r in p["layers"]:
        print(f"  L{r['layer']}{r['state']} acc {r['accuracy']:.3f} rand {r['random_network']:.3f} ctrl {r['control_task']:.3f} "
              f"shuf {r['shuffled']:.3f} rand-ctrl {r['random_network_control_task']:.3f} | -base {B._iv(r['over_baseline'])} "
              f"-rand {B._iv(r['over_random'])} sel {B._iv(r['selectivity'])} reads {B._clears(r)}")
