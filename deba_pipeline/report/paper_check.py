"""Our computation against the paper's printed derived columns (ΔAcc, throughput, Table 3's
summary rows): each printed value either agrees to its printed precision or is reported."""
from __future__ import annotations

from ..analysis import compare, summary_rows


def _agrees(printed: str, computed: float) -> bool:
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(float(printed) - computed) <= 0.5 * 10 ** -decimals + 1e-9


def check(printed: dict, records) -> list:
    """One row per printed value: where, what, printed, computed, agrees."""
    rows = []
    main = compare(records)
    for row in printed.get("table4", []):
        c = main.get((row["arch"], row["dataset"]))
        if c is None:
            continue
        where = f"Table 4 {row['arch']}/{row['dataset']}"
        rows.append({"where": where, "what": "ΔAcc", "printed": row["delta_acc"],
                     "computed": f"{c['delta_acc']:+.2f}",
                     "agrees": _agrees(row["delta_acc"], c["delta_acc"])})
        rows.append({"where": where, "what": "throughput", "printed": row["throughput"] + "×",
                     "computed": f"{c['throughput']:.3f}×",
                     "agrees": _agrees(row["throughput"], c["throughput"])})
    t3 = printed.get("table3")
    if t3:
        dataset = t3["dataset"]
        variants = list(t3["summary"]["degraded"])
        found = {v: compare(records, variant=v) for v in variants}
        for row in t3["rows"]:
            for v in variants:
                c = found[v].get((row["arch"], dataset))
                if c is not None:
                    rows.append({"where": f"Table 3 {row['arch']} {v}", "what": "ΔAcc",
                                 "printed": row[v][0], "computed": f"{c['delta_acc']:+.2f}",
                                 "agrees": _agrees(row[v][0], c["delta_acc"])})
        for v in variants:
            deltas = [c["delta_acc"] for (arch, ds), c in found[v].items() if ds == dataset]
            if not deltas:
                continue
            s = summary_rows(deltas)
            computed = f"{s['degraded']}/{s['total']}"
            rows.append({"where": f"Table 3 summary {v}", "what": "Degraded (>1pt)",
                         "printed": t3["summary"]["degraded"][v], "computed": computed,
                         "agrees": t3["summary"]["degraded"][v] == computed})
            mean_abs = t3["summary"]["mean_abs_delta_acc"][v]
            rows.append({"where": f"Table 3 summary {v}", "what": "Mean |ΔAcc|",
                         "printed": mean_abs, "computed": f"{s['mean_abs_delta_acc']:.3f}",
                         "agrees": _agrees(mean_abs, s["mean_abs_delta_acc"])})
    return rows
