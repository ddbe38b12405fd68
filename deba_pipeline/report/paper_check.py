"""The paper's printed values (paper_printed.yaml, beside this file): checked against what its own
inputs give, so the report can say where the paper disagrees with itself; and set beside our
own numbers for every cell a study ran."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from deba_pipeline.core.errors import DebaError
from deba_pipeline.report.comparison import compare, summary_rows

PRINTED = Path(__file__).with_name("paper_printed.yaml")
SEEDS = (2, 7, 42, 123, 199)
# five z-scores with mean 0 and sample standard deviation 1
Z = (-1.2649110640673518, -0.6324555320336759, 0.0, 0.6324555320336759, 1.2649110640673518)


def load(path=None) -> dict:
    """The printed values: ours beside this file, or `path` (`deba aggregate --compare`), which
    must hold the same tables; anything else is one DebaError naming the file."""
    fix = f"give --compare a file laid out like {PRINTED.name} (tables table3 and table4)"
    try:
        printed = OmegaConf.to_container(OmegaConf.load(path or PRINTED))
        paper_records(printed)
        cells(printed)
    except FileNotFoundError:
        raise DebaError(f"{path} does not exist: {fix}.") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise DebaError(
            f"{path} is not a file of the paper's printed tables ({type(exc).__name__}"
            f": {str(exc).splitlines()[0] if str(exc) else 'wrong layout'}): "
            f"{fix}."
        ) from None
    except Exception as exc:  # OmegaConf's YAML errors
        raise DebaError(f"{path} is not valid YAML ({str(exc).splitlines()[0]}): {fix}.") from None
    return printed


def _spread(mean, std):
    """Five values whose mean and sample standard deviation are exactly `mean` and `std`."""
    return [mean + std * z for z in Z]


def _record(arch, dataset, method, variant, seed, accuracy, seconds):
    return {
        "schema": 2,
        "arch": arch,
        "dataset": dataset,
        "seed": seed,
        "method": method,
        "variant": variant,
        "final_test_accuracy": accuracy,
        "train_time_s": seconds,
        "config": {},
        "epochs": [
            {
                "epoch": 1,
                "batch_size": 64,
                "epoch_time_s": seconds,
                "train_loss": 1.0,
                "decision": "hold",
                "signals": {},
            }
        ],
    }


def paper_records(printed) -> list:
    """The paper's inputs as run records: per method, five seeds at the printed mean and std;
    Table 3's variants at the printed ΔAcc and speedup from the fixed runs of Table 4."""
    records, fixed = [], {}
    for row in printed["table4"]:
        arch, ds = row["arch"], row["dataset"]
        acc_f, acc_d = _spread(*row["fixed_acc"]), _spread(*row["deba_acc"])
        t_f, t_d = _spread(*row["fixed_time"]), _spread(*row["deba_time"])
        fixed[(arch, ds)] = (acc_f, t_f)
        for i, seed in enumerate(SEEDS):
            records.append(_record(arch, ds, "fixed", "baseline", seed, acc_f[i], t_f[i]))
            records.append(_record(arch, ds, "deba", "baseline", seed, acc_d[i], t_d[i]))
    t3 = printed["table3"]
    for row in t3["rows"]:
        acc_f, t_f = fixed[(row["arch"], t3["dataset"])]
        for variant in (v for v in row if v not in ("arch", "baseline")):
            delta, speedup = (float(v) for v in row[variant])
            for i, seed in enumerate(SEEDS):
                records.append(
                    _record(
                        row["arch"],
                        t3["dataset"],
                        "deba",
                        variant,
                        seed,
                        acc_f[i] + delta,
                        t_f[i] * (1 - speedup / 100),
                    )
                )
    return records


def _half(value) -> float:
    """Half a unit in the last digit `value` was printed with: its rounding."""
    text = str(value).lstrip("+")
    decimals = len(text.split(".")[1]) if "." in text else 0
    return 0.5 * 10**-decimals


def _row(where, what, printed, computed, shown, slack: float = 0.0):
    """Agrees where `computed` lies within the printed value's rounding plus `slack`, what the
    rounding of the paper's own inputs can move the computed value by."""
    return {
        "where": where,
        "what": what,
        "printed": printed,
        "computed": shown,
        "agrees": abs(float(printed) - computed) <= _half(printed) + slack + 1e-9,
    }


def _slacks(row) -> dict:
    """What rounding the printed inputs of a Table 4 row can move each derived value by."""
    (acc_f, _), (acc_d, _) = row["fixed_acc"], row["deba_acc"]
    (t_f, _), (t_d, _) = row["fixed_time"], row["deba_time"]
    relative = _half(t_f) / t_f + _half(t_d) / t_d  # of t_f / t_d, to first order
    return {
        "delta_acc": _half(acc_f) + _half(acc_d),
        "throughput": t_f / t_d * relative,
        "speedup": 100 * t_d / t_f * relative,
    }


def check(printed: dict, records) -> list:
    """One row per printed value: where, what, printed, computed from `records`, agrees (within
    the rounding of the printed value and of the inputs it derives from)."""
    rows, slacks, repeated = [], {}, {}
    main = compare(records)
    for row in printed.get("table4", []):
        c = main.get((row["arch"], row["dataset"]))
        slacks[(row["arch"], row["dataset"])] = slack = _slacks(row)
        repeated[(row["arch"], row["dataset"])] = row["delta_acc"]
        if c is not None:
            where = f"Table 4 {row['arch']}/{row['dataset']}"
            rows.append(
                _row(
                    where,
                    "ΔAcc",
                    row["delta_acc"],
                    c.delta_acc,
                    f"{c.delta_acc:+.2f}",
                    slack["delta_acc"],
                )
            )
            rows.append(
                _row(
                    where,
                    "throughput",
                    row["throughput"],
                    c.throughput,
                    f"{c.throughput:.3f}×",
                    slack["throughput"],
                )
                | {"printed": row["throughput"] + "×"}
            )
    t3 = printed.get("table3")
    if not t3:
        return rows
    dataset, variants = t3["dataset"], list(t3["summary"]["degraded"])
    found = {v: compare(records, variant=v) for v in variants}
    rows += _table3_baseline(t3["rows"], found["baseline"], dataset, slacks, repeated)
    for v in variants:
        rows += _summary(v, t3, found[v], dataset, slacks)
    return rows


def _table3_baseline(t3_rows, cells, dataset, slacks, repeated) -> list:
    """Table 3's baseline column: its ΔAcc (where Table 4 does not print the same value) and
    its speedup, each against what Table 4's inputs give."""
    rows = []
    for row in t3_rows:
        # Only the baseline column is checked: the ablations' ΔAcc are the inputs their
        # records are built from, so they could not disagree and would count for nothing.
        c, key = cells.get((row["arch"], dataset)), (row["arch"], dataset)
        if c is None:  # the same runs as Table 4
            continue
        where = f"Table 3 {row['arch']} baseline"
        if row["baseline"][0] != repeated.get(key):  # the same printed ΔAcc is checked once
            rows.append(
                _row(
                    where,
                    "ΔAcc against Table 4's accuracies",
                    row["baseline"][0],
                    c.delta_acc,
                    f"{c.delta_acc:+.2f}",
                    slacks[key]["delta_acc"],
                )
            )
        # Table 3 prints the speedup of the mean times, Table 4 the mean of per-seed ones
        speedup = 100 * (1 - 1 / c.throughput)
        rows.append(
            _row(
                where,
                "speedup against Table 4's times",
                row["baseline"][1],
                speedup,
                f"{speedup:.2f}",
                slacks[key]["speedup"],
            )
        )
    return rows


def _summary(variant, t3, cells_found, dataset, slacks) -> list:
    """Table 3's summary rows for `variant`: a count of ΔAcc below −1 agrees where some value
    of each ΔAcc within its inputs' rounding gives it."""
    printed_rows = {row["arch"]: row for row in t3["rows"]}
    found = [
        (
            c.delta_acc,
            slacks[key]["delta_acc"]
            if variant == "baseline"
            else _half(printed_rows[key[0]][variant][0]),
        )
        for key, c in cells_found.items()
        if key[1] == dataset
    ]
    if not found:
        return []
    deltas = [d for d, _ in found]
    s = summary_rows(deltas)
    fewest = sum(d + slack < -1 for d, slack in found)
    most = sum(d - slack < -1 for d, slack in found)
    printed = t3["summary"]["degraded"][variant]
    count = int(printed.split("/")[0])
    return [
        {
            "where": f"Table 3 summary {variant}",
            "what": "Lost > 1 pt (mean)",
            "printed": printed,
            "computed": f"{s['degraded']}/{s['total']}",
            "agrees": fewest <= count <= most and printed.endswith(f"/{s['total']}"),
        },
        _row(
            f"Table 3 summary {variant}",
            "Mean |ΔAcc|",
            t3["summary"]["mean_abs_delta_acc"][variant],
            s["mean_abs_delta_acc"],
            f"{s['mean_abs_delta_acc']:.3f}",
            sum(slack for _, slack in found) / len(found),
        ),
    ]


def cells(printed) -> set:
    return {(row["arch"], row["dataset"]) for row in printed.get("table4", [])}


def beside(printed, main) -> list:
    """Our comparison beside the paper's, for every cell both have."""
    rows = []
    for row in printed.get("table4", []):
        c = main.get((row["arch"], row["dataset"]))
        if c is None:
            continue
        ours = c.model_speedup_mean
        mean, std = row["speedup"]  # like ours (docs/pipeline.md): the mean of per-seed speedups
        rows.append(
            {
                "Architecture": row["arch"],
                "Dataset": row["dataset"],
                "ΔAcc, ours": f"{c.delta_acc:+.2f}",
                "ΔAcc, paper": row["delta_acc"],
                "Speedup, ours modelled (%)": "–" if ours is None else f"{ours:.1f}",
                "Speedup, ours measured (%)": f"{c.speedup_mean:.1f}",
                "Speedup, paper (%)": f"{mean} ± {std}",
            }
        )
    return rows
