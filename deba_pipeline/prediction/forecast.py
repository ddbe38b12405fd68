"""One cell's prediction (docs/method.md "prediction"): per architecture and dataset, from its
profile runs and a step-time table over the sizes a strategy may reach, the noise scale over
training, each phase's useful and fastest batch, the headroom, and each strategy's trajectory,
saving and accuracy risk, each with its band. Pure functions."""

from __future__ import annotations

import math
import statistics
from statistics import NormalDist

from deba_pipeline.prediction.check import BAND, band, targets
from deba_pipeline.prediction.model import MODEL_ERROR, TRANSFER, NoiseCurve
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
        out.append(
            {
                "epoch": k + 1,
                "progress": end,
                "noise_scale": mean,
                "band": None if mean is None else [max(0.0, mean - half), mean + half],
            }
        )
    return out


def cell(
    profiles,
    table: dict,
    train_size: int,
    methods: dict,
    epochs: int,
    runs: int,
    tolerance: float,
    transfer: float = TRANSFER,
    world: int = 1,
) -> dict:
    """`profiles`: [(noise curve, profile record)]; `methods`: {name: resolved deba config};
    `world`: the processes of a run, whose multiple every batch is."""
    aims = targets(profiles, tolerance)
    if not aims:
        return {
            "problem": "no profile run reached its own final accuracy minus "
            "report.accuracy_tolerance"
        }
    table_error = _mean(_ratio_errors(table)) or 0.0  # a step time's relative error
    noise_err = _mean([noise_error(record) for _, record in profiles]) or 0.0
    room = [headroom(c, table, train_size, aim, epochs, transfer) for c, aim in aims]
    out = {
        "profile_runs": len(profiles),
        "target_progress": [aim for _, aim in aims],
        "noise_scale": noise_over_training(profiles),
        "phases": phases(aims[0][0], table, train_size, transfer),
        "headroom": _headroom(room, table_error),
        "strategies": {},
    }
    for name, deba in methods.items():
        labelled = {}
        for curve, aim in aims:  # each profile run's curve, and it with its noise ± its error
            scaled = [curve] + [scale(curve, 1 + sign * noise_err) for sign in (1, -1)]
            paths = [trajectories(c, deba, epochs, train_size, transfer, world) for c in scaled]
            for label in paths[0]:
                try:
                    found = [
                        outcome(c, p[label], table, train_size, aim, transfer)
                        for c, p in zip(scaled, paths)
                    ]
                except KeyError as exc:  # a strategy whose own growth leaves the ladder
                    return {
                        "problem": f"strategy {name!r}: {exc.args[0]}, which it reaches: "
                        f"give it deba's growth and rollback"
                    }
                labelled.setdefault(label, []).append(found)
        out["strategies"][name] = {
            label: saving_summary(found, runs, table_error) for label, found in labelled.items()
        }
    return out


def _headroom(room: list, table_error: float) -> dict:
    """What the best schedule on this hardware saves, averaged over the profile runs, and
    whether that is beyond the table's own noise."""
    ratio = _mean([r["ratio"] for r in room if r["ratio"] > 0])  # 0: the best never gets there
    gain_pct = 100 * (1 - 1 / ratio) if ratio else None
    noise_pct = 100 * 1.645 * math.sqrt(2) * table_error
    return {
        "ratio": ratio,
        "saving_pct": gain_pct,
        "best_batches": room[0]["best_batches"],
        "table_noise_pct": noise_pct,
        "verdict": (
            "nothing to gain on this hardware"
            if gain_pct is None or gain_pct <= noise_pct
            else "room to gain"
        ),
    }


def scale(curve: NoiseCurve, factor: float) -> NoiseCurve:
    return NoiseCurve(curve.base, curve.ends, tuple(max(0.0, n * factor) for n in curve.noise))


def saving_summary(found: list, runs: int, table_error: float) -> dict:
    """A trajectory's saving over profile runs and its band: the prediction interval over
    profile runs (`band`), the noise scale's own error (half the saving's move between the
    noise ± its error), the step-time table's (each time's relative error on both times) and
    the model's (MODEL_ERROR, its 80% error on Pollux's runs), added in quadrature."""
    savings = [f[0]["saving_pct"] for f in found]
    known = None not in savings and all(
        f[1]["saving_pct"] is not None and f[2]["saving_pct"] is not None for f in found
    )
    out = {
        "batches": found[0][0]["batches"],
        "saving_pct": _mean(savings) if known else None,
        "band": None,
        "band_level": BAND,
        "band_parts": None,
        "progress_vs_fixed": _mean([f[0]["progress_vs_fixed"] for f in found]),
        "stalls": any(f[0]["stalls"] for f in found),
    }
    seeds = band(savings, runs) if known else None
    if seeds is None or all(
        len(set(f[0]["batches"])) == 1 and f[0]["saving_pct"] == 0 for f in found
    ):  # the fixed batch's own trajectory: 0 by making
        return out
    z, left = NormalDist().inv_cdf(0.5 + BAND / 2), 100 - out["saving_pct"]  # of T_fixed
    parts = {
        "profile_runs": (seeds[1] - seeds[0]) / 2,
        "noise_scale": z * _mean([abs(f[1]["saving_pct"] - f[2]["saving_pct"]) / 2 for f in found]),
        "step_time_table": z * math.sqrt(2) * table_error * left,
        "model": MODEL_ERROR * left,
    }
    half = math.sqrt(sum(v * v for v in parts.values()))
    out.update(band=[out["saving_pct"] - half, out["saving_pct"] + half], band_parts=parts)
    return out


def _ratio_errors(table: dict) -> list:
    return [e for e in (table.get("ratio_error") or {}).values() if e]
