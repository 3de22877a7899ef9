"""Compare the short runs (scripts/short_runs.sh) before the one-results-schema restructure (old keys) and after it: usage BEFORE AFTER."""
import json, math, sys
from pathlib import Path
B, A = Path(sys.argv[1]), Path(sys.argv[2])
def load(p):
    return json.loads(p.read_text()) if p.exists() else None
rows = []
def same(label, x, y):
    x = x if isinstance(x, list) else [x]; y = y if isinstance(y, list) else [y]
    ok = len(x) == len(y) and all((a == b) or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) for a, b in zip(x, y))
    rows.append((label, ok, x[:3], y[:3]))
b, a = load(B/"sin/results.json"), load(A/"sin/results.json")
if b and a:
    for m in b["over_seeds"]["methods"]:
        for po, pn in (("with_meta_finetuning", "with_meta_update"), ("without_meta_finetuning", "without_meta_update")):
            for i, s in enumerate(b["config"]["seeds"]):
                same(f"sin {m} {pn} seed {s}", b["seeds"][str(s)]["methods"][m][po]["loss"]["mean"], a["per_seed"][str(s)]["methods"][m][pn]["loss"]["mean"])
b, a = load(B/"sinmaml/results.json"), load(A/"sinmaml/results.json")
if b and a: same("sinmaml mse", b["mse_vs_steps"]["mean"], a["extra"]["mse_vs_steps"]["mean"])
b, a = load(B/"nav/results.json"), load(A/"nav/results.json")
if b and a:
    for m in b["returns"]:
        for p in ("with_meta_update", "without_meta_update"):
            same(f"nav {m} {p}", b["returns"][m][p]["mean"], a["methods"][m][p]["return"]["mean"])
            same(f"nav {m} {p} mean-action", b["returns_mean_action"][m][p]["mean"], a["methods"][m][p]["return_mean_action"]["mean"])
b, a = load(B/"navmaml/results.json"), load(A/"navmaml/results.json")
if b and a:
    for m in b["returns"]:
        same(f"navmaml {m}", b["returns"][m]["mean"], a["methods"][m]["without_meta_update"]["return"]["mean"])
b, a = load(B/"cont/results.json"), load(A/"cont/results.json")
if b and a:
    for m in b["methods"]:
        for po, pn in (("with_meta_finetuning", "with_meta_update"), ("without_meta_finetuning", "without_meta_update")):
            x, y = b["methods"][m][po]["mean"], a["methods"][m][pn]["mse"]["mean"]
            rows.append((f"cont {m} {pn}", abs(x - y) <= 1e-12 * abs(x), [x], [y]))
b, a = load(B/"coml/results.json"), load(A/"coml/results.json")
if b and a:
    for m in b["methods"]:
        x, y = b["methods"][m]["mean"], a["methods"][m]["without_meta_update"]["mse"]["mean"]
        rows.append((f"coml {m}", abs(x - y) <= 1e-12 * abs(x), [x], [y]))
for algo in ("maltml", "maml"):
    b, a = load(B/f"demo/{algo}/eval.json"), load(A/f"demo/{algo}/eval.json")
    if b and a:
        for po, pn in (("with_meta_finetuning", "with_meta_update"), ("without_meta_finetuning", "without_meta_update")):
            same(f"demo {algo} {pn}", b[po]["accuracy"]["mean"], a["methods"][algo][pn]["accuracy"]["mean"])
bad = [r for r in rows if not r[1]]
for r in rows: print(("OK  " if r[1] else "DIFF"), r[0], "" if r[1] else f"{r[2]} vs {r[3]}")
print(f"{len(rows) - len(bad)} identical, {len(bad)} different")
