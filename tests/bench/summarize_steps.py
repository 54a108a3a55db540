"""summarize_steps.py: the Markdown table of run_model_bench.sh's JSON lines ("model side {json}"
per line, several repetitions per side): medians over the repetitions, ratios torch / moonseg
(above 1: moonseg is faster) of the wall step time and of the process CPU time.

    python3 tests/bench/summarize_steps.py lines.txt
"""
import json
import statistics
import sys

NAMES = {"moonseg": "moonseg", "cp": "moonseg with_cp", "t1": "torch 1.13", "t2": "torch 2.x"}


def main(path):
    rows = {}
    for ln in open(path):
        if not ln.strip() or ln.startswith("#"):
            continue
        model, side, js = ln.split(" ", 2)
        rows.setdefault(model, {}).setdefault(side, []).append(json.loads(js))
    print("| model (params) | impl | n | step s | CPU s/step | fwd s | bwd s | peak RSS MB | tensor peak MB "
          "| torch/moonseg step | torch/moonseg CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for model, sides in rows.items():
        med = {}
        for side in ("moonseg", "cp", "t1", "t2"):
            r = sides.get(side)
            if r:
                med[side] = {k: statistics.median(x[k] for x in r) for k in ("step_s", "cpu_s", "fwd_s", "bwd_s", "peak_rss_mb")}
                tp = [x["tensor_peak_mb"] for x in r if "tensor_peak_mb" in x]
                med[side]["tensor"] = "%.0f" % statistics.median(tp) if tp else "-"
                med[side]["impl"] = r[0]["impl"]
                med[side]["n"] = sum(x["steps"] for x in r)
                med[side]["params"] = r[0].get("params", 0)
        first = True
        for side, v in med.items():
            ratio = ("-", "-")
            if side in ("t1", "t2") and "moonseg" in med:
                ms = med["moonseg"]
                ratio = ("%.2f" % (v["step_s"] / ms["step_s"]), "%.2f" % (v["cpu_s"] / ms["cpu_s"]))
            elif side == "cp" and "moonseg" in med:
                ratio = ("(cp/no cp %.2f)" % (v["step_s"] / med["moonseg"]["step_s"]), "-")
            label = "%s (%.1fM)" % (model, v["params"] / 1e6) if first else ""
            first = False
            print("| %s | %s | %d | %.2f | %.2f | %.2f | %.2f | %.0f | %s | %s | %s |" % (
                label, v["impl"], v["n"], v["step_s"], v["cpu_s"], v["fwd_s"], v["bwd_s"], v["peak_rss_mb"],
                v["tensor"], ratio[0], ratio[1]))


if __name__ == "__main__":
    main(sys.argv[1])
