"""One cell's prediction (docs/method.md "prediction"): per architecture and dataset, from its
profile runs and a step-time table over the sizes a strategy may reach, the noise scale over
training, each phase's useful and fastest batch, the headroom, and each strategy's trajectory,
saving and accuracy risk, each with its band. Pure functions."""
from __future__ import annotations

import math
import statistics

from deba_pipeline.prediction.check import BAND, band, targets
from deba_pipeline.prediction.model import TRANSFER
from deba_pipeline.prediction.replay import noise_error
from deba_pipeline.prediction.strategies import headroom, outcome, phases, trajectories


def _mean(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(values) if values else None


def noise_over_training(profiles) -> list:
    """Per profile epoch: the noise scale's mean over profile runs and its band, the larger of
    their spread and the two halves' error (each run's own)."""
    curves = [curve for curve, _ in profiles]
    error = _mean([noise_error(record) for _, record in profiles]) or 0.0
    out = []
    for k, end in enumerate(curves[0].ends):
        values = [c.noise[k] for c in curves if k < len(c.noise)]
        mean = _mean(values)
        spread = statistics.stdev(values) if len(values) > 1 and mean is not None else 0.0
        half = max(spread, (mean or 0.0) * error)
        out.append({"epoch": k + 1, "progress": end, "noise_scale": mean,
                    "band": None if mean is None else [max(0.0, mean - half), mean + half]})
    return out


def cell(profiles, table: dict, train_size: int, methods: dict, epochs: int, runs: int,
         tolerance: float, transfer: float = TRANSFER, world: int = 1) -> dict:
    """`profiles`: [(noise curve, profile record)]; `methods`: {name: resolved deba config};
    `world`: the processes of a run, whose multiple every batch is."""
    aims = targets(profiles, tolerance)
    if not aims:
        return {"problem": "no profile run reached its own final accuracy minus "
                           "report.accuracy_tolerance"}
    noise = _mean([e for e in _ratio_errors(table)]) or 0.0
    room = [headroom(c, table, train_size, aim, epochs, transfer) for c, aim in aims]
    ratio = _mean([r["ratio"] for r in room if r["ratio"] > 0])  # 0: the best never gets there
    gain_pct = 100 * (1 - 1 / ratio) if ratio else None
    out = {"profile_runs": len(profiles), "target_progress": [aim for _, aim in aims],
           "noise_scale": noise_over_training(profiles),
           "phases": phases(aims[0][0], table, train_size, transfer),
           "headroom": {"ratio": ratio, "saving_pct": gain_pct,
                        "best_batches": room[0]["best_batches"],
                        "table_noise_pct": 100 * 1.645 * math.sqrt(2) * noise,
                        "verdict": ("nothing to gain on this hardware"
                                    if gain_pct is None or gain_pct <= 100 * 1.645
                                    * math.sqrt(2) * noise else "room to gain")},
           "strategies": {}}
    for name, deba in methods.items():
        labelled = {}
        for curve, aim in aims:
            for label, path in trajectories(curve, deba, epochs, train_size, transfer,
                                            world).items():
                try:
                    found = outcome(curve, path, table, train_size, aim, transfer)
                except KeyError as exc:  # a strategy whose own growth leaves the ladder
                    return {"problem": f"strategy {name!r}: {exc.args[0]}, which it reaches: "
                                       f"give it deba's growth and rollback"}
                labelled.setdefault(label, []).append(found)
        out["strategies"][name] = {label: _summary(found, runs)
                                   for label, found in labelled.items()}
    return out


def _summary(found: list, runs: int) -> dict:
    savings = [f["saving_pct"] for f in found]
    known = None not in savings
    return {"batches": found[0]["batches"],
            "saving_pct": _mean(savings) if known else None,
            "band": band(savings, runs) if known else None, "band_level": BAND,
            "progress_vs_fixed": _mean([f["progress_vs_fixed"] for f in found]),
            "stalls": any(f["stalls"] for f in found)}


def _ratio_errors(table: dict) -> list:
    return [e for e in (table.get("ratio_error") or {}).values() if e]
