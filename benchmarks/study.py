"""The DLFusion study, reproduced by one command.

    python benchmarks/study.py [--targets mlu100,edge8] [--models all|a,b]
        [--strategies baseline,cores-only,fusion-only,dlfusion,dp,exhaustive]
        [--jobs 2] [--cache-dir benchmarks/study/cache] [--out benchmarks/study]
        [--plans benchmarks/plans] [--results docs/RESULTS.md] [--windows 2]
        [--window-layers 12] [--core-choices 1,2,4] [--max-group 8]
        [--max-configs 20000] [--table TARGET=PATH] [--cold DIR]

For every target and zoo model, `dlfusion.tuning.tune` runs every strategy
through one measurer per target (tuning-record cache
`<cache-dir>/<target>.jsonl`, so a re-run simulates nothing new) and
`write_outputs` writes `<out>/<target>/<model>-<target>.json|.md|.png` and
the plans; those of `dp`, `exhaustive` and `dlfusion` are also copied to
`<plans>/<target>/<model>-<strategy>.json` (tests/test_zoo_plans.py compiles
every plan there). `exhaustive` does not
finish on whole models (past its guard): it is reported as not finished.

Then `dp` and `exhaustive` are compared on `--windows` sub-graphs per model
(`dlfusion.tuning.search.window`): consecutive layers of the program order
starting at a block boundary (a point where one layer's output is all that
crosses, e.g. between residual or inception blocks), at most
`--window-layers` layers, shrunk from the end until `exhaustive` passes its
guard; written as `<out>/<target>/<model>-<target>-windows.json`.

Finally `--results` (docs/RESULTS.md) is assembled from those JSON files,
with one bar chart per target in `<results dir>/figures/study-<target>.png`;
the section `## Discussion` of an existing file is kept as it is.
Progress goes to stderr, one line per strategy and window.

A re-run with a warm cache times `dp`'s search without its simulations;
`--cold DIR` adds the time and simulations of `dp` runs from an empty cache
(`benchmarks/dp_cold.sh` makes them), against which the heuristic's planning
time is then compared.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROG = "study"
ALL_STRATEGIES = ("baseline", "cores-only", "fusion-only", "dlfusion", "dp", "exhaustive")
SHOWN = ("cores-only", "fusion-only", "dlfusion", "dp", "exhaustive")  # in the chart
WITHIN, WITHIN_GEOMEAN, PLANNING_SHARE = 1.05, 1.02, 0.01  # the study's goals
EQUAL_REL = 1e-6
DISCUSSION = (
    "*To be written: how these speedups compare with the paper's 3.6x-7.9x over its "
    "unoptimized baseline, and why.*"
)


# the plans copied for tests/test_zoo_plans.py: those the test cannot make
# itself in CI time (the searches), and the heuristic's on every target (the
# test plans the cheap strategies on the default target only)
COMPILED_PLANS = ("dp", "exhaustive", "dlfusion")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Run the DLFusion study and write docs/RESULTS.md.")
    p.add_argument("--targets", default="mlu100,edge8", metavar="A,B")
    p.add_argument("--models", default="all", metavar="all|A,B", help="zoo models (default: all)")
    p.add_argument("--strategies", default=",".join(ALL_STRATEGIES), metavar="A,B")
    p.add_argument("--jobs", type=int, default=2, metavar="N", help="parallel measurements (default: 2)")
    p.add_argument("--cache-dir", type=Path, default=ROOT / "benchmarks/study/cache", metavar="DIR")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/study", metavar="DIR")
    p.add_argument("--plans", type=Path, default=ROOT / "benchmarks/plans", metavar="DIR",
                   help="where the plans are copied as <target>/<model>-<strategy>.json")
    p.add_argument("--results", type=Path, default=ROOT / "docs/RESULTS.md", metavar="FILE")
    p.add_argument("--windows", type=int, default=2, metavar="N", help="dp-vs-exhaustive windows per model")
    p.add_argument("--window-layers", type=int, default=12, metavar="N", help="the most layers of a window")
    p.add_argument("--core-choices", metavar="1,2,4", help="default: the target's core_choices")
    p.add_argument("--max-group", type=int, default=8, metavar="N")
    p.add_argument("--max-configs", type=int, default=20_000, metavar="N", help="exhaustive's guard")
    p.add_argument("--table", action="append", default=[], metavar="TARGET=PATH",
                   help="characterization table of a target (default: its cached one)")
    p.add_argument("--cold", type=Path, metavar="DIR",
                   help="dp plans saved by runs from an empty cache (<target>-<model>-dp.json, "
                        "fuse-layers{strategy=dp save=...}): their search time and simulations "
                        "are reported beside this run's")
    return p


# --------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------


def log(text: str) -> None:
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def block_starts(graph) -> list[int]:
    """The positions b where only layer b-1's output crosses from the layers
    before b to the layers from b on (0 included): block boundaries."""
    n = len(graph)
    out, reach = [0], -1  # reach: the furthest successor of layers < b-1
    for b in range(1, n):
        if reach < b:
            out.append(b)
        reach = max([reach, *graph.succs[b - 1]])
    return out


def exhaustive_fits(graph, layers: Sequence[int], max_group: int, guard: int) -> bool:
    from dlfusion.tuning.search import compositions, count_groupings, window

    sub = window(graph, list(layers))
    return compositions(len(sub), max_group) <= guard and count_groupings(sub, max_group, guard) is not None


def pick_windows(graph, count: int, most: int, max_group: int, guard: int) -> list[range]:
    """`count` windows of consecutive layers, deterministically: starting at
    the last block boundary at or before (k+1)/(count+1) of the model (past
    the previous window's start, else at that point itself), ending at
    the last boundary within `most` layers (else after `most` layers) and
    before the next window, then shrunk until exhaustive passes its guard."""
    n = len(graph)
    if count < 1 or n == 0:
        return []
    bounds = block_starts(graph)
    starts: list[int] = []
    for k in range(count):
        anchor = (k + 1) * n // (count + 1)
        start = max([b for b in bounds if b <= anchor and (not starts or b > starts[-1])], default=anchor)
        if not starts or start > starts[-1]:
            starts.append(start)
    out = []
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else n
        ends = [b for b in bounds[1:] + [n] if start < b <= min(stop, start + most)]
        end = max(ends, default=min(stop, start + most))
        while end - start > 1 and not exhaustive_fits(graph, range(start, end), max_group, guard):
            end -= 1
        out.append(range(start, end))
    return out


def compare_window(graph, layers: range, target, measurer, sopts: dict, model: str) -> dict:
    """dp and exhaustive on one window, same measurer and options."""
    from dlfusion.tuning.search import window
    from dlfusion.tuning.tune import SearchProgress, run_strategy

    sub = window(graph, list(layers))
    doc: dict = {"start": layers.start, "stop": layers.stop, "layers": [graph.names[i] for i in layers]}
    for name in ("dp", "exhaustive"):
        r = run_strategy(name, sub, target, measurer, sopts, SearchProgress(name, False))
        doc[name] = {"finished": r.finished, "message": r.message, "latency_us": r.latency_us,
                     "search_s": round(r.search_s, 3), "configurations": r.configurations,
                     "groupings": r.stats.get("groupings")}
        log(f"[{target.name}] {model} window {layers.start}-{layers.stop - 1} {name}: "
            + (f"{r.latency_us:.1f} us, {r.search_s:.1f} s" if r.finished else r.message))
    dp_us, ex_us = doc["dp"]["latency_us"], doc["exhaustive"]["latency_us"]
    doc["equal"] = (None if dp_us is None or ex_us is None
                    else abs(dp_us - ex_us) <= EQUAL_REL * max(abs(dp_us), abs(ex_us)))
    return doc


def write_text(path: Path, text: str) -> None:
    from dlfusion.tuning.tune import StagedFiles

    staged = StagedFiles()
    staged.write(path, text)
    staged.commit()


def run_target(target_name: str, models: Sequence[str], args) -> None:
    from dlfusion.targets import load_target
    from dlfusion.tuning.measure import Measurer
    from dlfusion.tuning.tune import TuneOptions, tune, write_outputs

    target = load_target(target_name)
    out = args.out / target.name
    cache = args.cache_dir / f"{target.name}.jsonl"
    cache.parent.mkdir(parents=True, exist_ok=True)
    with Measurer.create(target, cache=cache, jobs=args.jobs) as measurer:
        for model in models:
            prefix = f"[{target.name}] {model}"
            options = TuneOptions(
                model, strategies=args.strategy_list, target=target_name, jobs=args.jobs, cache=str(cache),
                max_group=args.max_group, max_configs=args.max_configs, core_choices=args.choices,
                table=args.tables.get(target.name), progress=sys.stderr.isatty(),
                log=lambda text, prefix=prefix: log(f"{prefix} {text}"),
            )
            t0 = time.perf_counter()
            log(f"{prefix}: {', '.join(args.strategy_list)}")
            report = tune(options, measurer)
            write_outputs(report, out)
            for r in report.results:  # the plans, for tests/test_zoo_plans.py
                if r.finished and r.strategy in COMPILED_PLANS:
                    src = out / "plans" / f"{report.stem}-{r.strategy}.json"
                    write_text(args.plans / target.name / f"{report.model}-{r.strategy}.json", src.read_text())
            picked = pick_windows(report.graph, args.windows, args.window_layers, args.max_group,
                                  args.max_configs)
            sopts = options.strategy_options()
            windows = [compare_window(report.graph, w, target, measurer, sopts, model) for w in picked]
            doc = {"model": report.model, "windows": windows}
            write_text(out / f"{report.stem}-windows.json", json.dumps(doc, indent=1) + "\n")
            log(f"{prefix}: done in {time.perf_counter() - t0:.1f} s")


# --------------------------------------------------------------------------
# RESULTS.md
# --------------------------------------------------------------------------


def geomean(xs: Sequence[float]) -> float | None:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def fmt(x, spec: str, suffix: str = "") -> str:
    return "–" if x is None else f"{x:{spec}}{suffix}"


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**holds**" if ok else "**does not hold**")


@dataclass
class ModelRow:
    """One model's figures on one target, from its JSON."""

    model: str
    doc: dict
    windows: list[dict]
    cold: dict | None = None  # the stats of a dp run from an empty cache (--cold)

    def get(self, strategy: str) -> dict | None:
        r = next((s for s in self.doc["strategies"] if s["strategy"] == strategy), None)
        return r if r and r["finished"] else None

    def latency(self, strategy: str) -> float | None:
        if strategy == "baseline":
            return self.doc["baseline_us"]
        r = self.get(strategy)
        return r["latency_us"] if r else None

    def speedup(self, strategy: str) -> float | None:
        lat = self.latency(strategy)
        return self.doc["baseline_us"] / lat if lat else None

    def field(self, strategy: str, key: str):
        r = self.get(strategy)
        return r[key] if r else None

    def ratio(self) -> float | None:
        h, d = self.latency("dlfusion"), self.latency("dp")
        return h / d if h and d else None

    def dp_seconds(self) -> float | None:
        """dp's search time from an empty cache when known, else this run's."""
        if self.cold and self.cold.get("seconds"):
            return float(self.cold["seconds"])
        return self.field("dp", "search_s")

    def planning_share(self) -> float | None:
        h, d = self.field("dlfusion", "search_s"), self.dp_seconds()
        return h / d if h is not None and d else None


def load_rows(out: Path, target: str, models: Sequence[str], cold: Path | None = None) -> list[ModelRow]:
    rows = []
    for model in models:
        doc = json.loads((out / target / f"{model}-{target}.json").read_text())
        win = out / target / f"{model}-{target}-windows.json"
        stats = None
        if cold is not None and (cold / f"{target}-{model}-dp.json").exists():
            stats = json.loads((cold / f"{target}-{model}-dp.json").read_text()).get("stats")
        rows.append(ModelRow(model, doc, json.loads(win.read_text())["windows"] if win.exists() else [], stats))
    return rows


def model_table(rows: list[ModelRow], strategies: Sequence[str]) -> list[str]:
    """One row per model: latencies, speedups, dlfusion/dp, search costs
    (columns of the strategies run; exhaustive only where it finished)."""
    ran = {"baseline", *strategies}
    lat = [s for s in ("baseline", "cores-only", "fusion-only", "dlfusion", "dp") if s in ran]
    if any(r.latency("exhaustive") for r in rows):
        lat.append("exhaustive")
    speed = [s for s in ("cores-only", "dlfusion", "dp") if s in ran]
    cost = [s for s in ("cores-only", "dp") if s in ran]
    heuristic, both = "dlfusion" in ran, {"dlfusion", "dp"} <= ran
    any_cold = any(r.cold for r in rows)
    cols = (["model", "layers"] + [f"{s} µs" for s in lat] + [f"{s} speedup" for s in speed]
            + (["dlfusion/dp"] if both else [])
            + [c for s in cost for c in (f"{s} search s", f"{s} configs")]
            + (["dp cold s", "dp cold sims"] if any_cold else [])
            + (["dlfusion plan ms"] if heuristic else []) + (["plan % of dp"] if both else []))
    out = ["| " + " | ".join(cols) + " |", "|---" + "|---:" * (len(cols) - 1) + "|"]
    for r in rows:
        cells = [r.model, str(r.doc["layers"])]
        cells += [fmt(r.latency(s), ".1f") for s in lat]
        cells += [fmt(r.speedup(s), ".2f", "x") for s in speed]
        cells += [fmt(r.ratio(), ".3f")] if both else []
        for s in cost:
            cells += [fmt(r.field(s, "search_s"), ".2f"), fmt(r.field(s, "configurations"), "d")]
        if any_cold:
            cells += [fmt(r.cold.get("seconds") if r.cold else None, ".0f"),
                      fmt(r.cold.get("measurements") if r.cold else None, "d")]
        if heuristic:
            secs = r.field("dlfusion", "search_s")
            cells.append(fmt(None if secs is None else 1000 * secs, ".0f"))
        if both:
            share = r.planning_share()
            cells.append(fmt(None if share is None else 100 * share, ".2f", "%"))
        out.append("| " + " | ".join(cells) + " |")
    return out


def summary(rows: list[ModelRow], strategies: Sequence[str]) -> list[str]:
    """Geometric means and how many models have dlfusion near dp."""
    out = []
    for s in ("cores-only", "dlfusion", "dp"):
        if s in strategies:
            xs = [r.speedup(s) for r in rows if r.speedup(s)]
            out.append(f"- geometric mean speedup over baseline, {s}: {fmt(geomean(xs), '.2f', 'x')} "
                       f"({len(xs)} of {len(rows)} models)")
    if {"dlfusion", "dp"} <= set(strategies):
        ratios = [x for x in (r.ratio() for r in rows) if x is not None]
        out += [f"- geometric mean dlfusion/dp latency: {fmt(geomean(ratios), '.3f')} "
                f"({len(ratios)} of {len(rows)} models)",
                f"- models with dlfusion within {100 * (WITHIN - 1):.0f}% of dp: "
                f"{sum(x <= WITHIN for x in ratios)} of {len(rows)}"]
    return out


def goals(rows: list[ModelRow], strategies: Sequence[str]) -> list[str]:
    """The study's goals, each stated from the rows ("not measured" when a
    figure is missing on some model)."""
    out = ["Goals, from the data above:", ""]
    if {"dlfusion", "dp"} <= set(strategies):
        ratios = [r.ratio() for r in rows]
        shares = [r.planning_share() for r in rows]
        complete = bool(rows) and None not in ratios
        timed = bool(rows) and None not in shares
        g = geomean(ratios) if complete else None
        out += [
            f"- dlfusion within {100 * (WITHIN - 1):.0f}% of dp on every model: "
            + verdict(all(x <= WITHIN for x in ratios) if complete else None),
            f"- dlfusion within {100 * (WITHIN_GEOMEAN - 1):.0f}% of dp in geometric mean: "
            + verdict(g <= WITHIN_GEOMEAN if g is not None else None),
            f"- dlfusion planning under {100 * PLANNING_SHARE:.0f}% of dp's search time on every model "
            f"(dp from an empty cache where known): "
            + verdict(all(x < PLANNING_SHARE for x in shares) if timed else None)
            + (f" (largest {100 * max(shares):.2f}%)" if timed else ""),
        ]
    ws = [w for r in rows for w in r.windows]
    ok = None if not ws or any(w["equal"] is None for w in ws) else all(w["equal"] for w in ws)
    out.append(f"- dp = exhaustive on every window ({len(ws)} windows): {verdict(ok)}")
    return out


def window_table(rows: list[ModelRow]) -> list[str]:
    out = ["| model | window layers | dp µs | exhaustive µs | groupings | exhaustive s | equal? |",
           "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        for w in r.windows:
            names = w["layers"]
            span = f"{w['start']}–{w['stop'] - 1} ({len(names)}): {names[0]} … {names[-1]}"
            ex = w["exhaustive"]
            equal = "–" if w["equal"] is None else ("yes" if w["equal"] else "**no**")
            out.append(f"| {r.model} | {span} | {fmt(w['dp']['latency_us'], '.1f')} | "
                       f"{fmt(ex['latency_us'], '.1f')} | {fmt(ex['groupings'], 'd')} | "
                       f"{fmt(ex['search_s'] if ex['finished'] else None, '.2f')} | {equal} |")
    return out


def chart_png(target: str, rows: list[ModelRow]) -> bytes:
    """Speedup over baseline per model (groups) and strategy (bars)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    shown = [s for s in SHOWN if any(r.speedup(s) for r in rows)]
    size = (max(6.0, 1.5 + len(rows) * (0.25 + 0.15 * len(shown))), 4.0)
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(shown))
    for j, s in enumerate(shown):
        xs = [i + (j - (len(shown) - 1) / 2) * width for i in range(len(rows))]
        ax.bar(xs, [r.speedup(s) or 0 for r in rows], width, label=s)
    ax.axhline(1, color="gray", lw=1, ls="--")
    ax.set_xticks(range(len(rows)), [r.model for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("speedup over baseline")
    ax.set_title(f"{target}: speedup over baseline (every layer alone on 1 core)", fontsize=9)
    top = max([r.speedup(s) or 1 for r in rows for s in shown], default=1)
    ax.set_ylim(0, top * 1.2)
    ax.legend(fontsize=8, ncols=max(1, len(shown)), loc="upper center")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def old_discussion(path: Path) -> str | None:
    """The text of an existing file's `## Discussion` section."""
    if not path.exists():
        return None
    m = re.search(r"^## Discussion[ \t]*\n(.*?)(?=^## |\Z)", path.read_text(), re.S | re.M)
    return m.group(1).strip() if m else None


def git_commit(outputs: Sequence[Path]) -> str:
    """`git rev-parse --short HEAD`, `+dirty` when a file other than the
    study's own outputs differs from it."""

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=True).stdout

    try:
        head = git("rev-parse", "--short", "HEAD").strip()
        changed = [line[3:].strip('"') for line in git("status", "--porcelain").splitlines()]
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    skip = [os.path.relpath(p.resolve(), ROOT) for p in outputs]
    dirty = [f for f in changed if not any(f == s or f.startswith(s.rstrip("/") + "/") for s in skip)]
    return head + ("+dirty" if dirty else "")


def provenance(command: str, commit: str) -> list[str]:
    import numpy

    return [
        "Produced by",
        "",
        "```",
        command,
        "```",
        "",
        f"on {datetime.date.today().isoformat()}, commit `{commit}`, {os.cpu_count()} cores (`nproc`), "
        f"Python {platform.python_version()}, numpy {numpy.__version__}. Every figure below is read "
        "from the per-model JSON files the command writes; a re-run reuses the tuning-record caches.",
    ]


def assemble(args, command: str, commit: str) -> None:
    """Write `args.results` and the charts, all or nothing."""
    from dlfusion.tuning.tune import StagedFiles

    results: Path = args.results
    discussion = old_discussion(results) or DISCUSSION
    staged = StagedFiles()
    text = ["# Results: the DLFusion study", "", *provenance(command, commit), "",
            "Latencies are the sum of the plan's kernels measured on the simulated target; speedups "
            "are over baseline (every layer its own kernel on 1 core); search times are planning "
            "only; configs are the kernel configurations the search measured. `–`: not run or "
            "not finished (exhaustive stops past its guard on whole models).", ""]
    try:
        for target in args.target_names:
            rows = load_rows(args.out, target, args.model_list, args.cold)
            figure = results.parent / "figures" / f"study-{target}.png"
            staged.write(figure, chart_png(target, rows))
            text += [f"## {target}", "", *model_table(rows, args.strategy_list), "",
                     *summary(rows, args.strategy_list), "", *goals(rows, args.strategy_list), "",
                     f"![speedup over baseline on {target}]({os.path.relpath(figure, results.parent)})", ""]
            if any(r.windows for r in rows):
                text += [f"### dp and exhaustive on windows ({target})", "",
                         "Windows of consecutive layers (program order) small enough for exhaustive "
                         f"(guard max-configs={args.max_configs}), same measurer and options.", "",
                         *window_table(rows), ""]
        text += ["## Discussion", "", discussion, ""]
        staged.write(results, "\n".join(text))
        staged.commit()
    except BaseException:
        staged.discard()
        raise


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def check_args(args) -> None:
    from dlfusion import zoo
    from dlfusion.errors import DlfusionError
    from dlfusion.targets import load_target
    from dlfusion.tuning.tune import check_strategies
    from dlfusion.tuning.tune_cli import parse_list

    args.strategy_list = check_strategies(parse_list(args.strategies, "--strategies"))
    args.model_list = list(zoo.MODELS) if args.models == "all" else parse_list(args.models, "--models")
    bad = [m for m in args.model_list if m not in zoo.MODELS]
    if bad or not args.model_list:
        raise DlfusionError(f"unknown model '{','.join(bad)}'", hint=f"choose from {', '.join(zoo.MODELS)}")
    args.targets_given = parse_list(args.targets, "--targets")
    args.target_names = [load_target(t).name for t in args.targets_given]
    args.choices = parse_list(args.core_choices, "--core-choices", int) or None
    args.tables = {}
    for item in args.table:
        name, sep, path = item.partition("=")
        if not sep:
            raise DlfusionError(f"bad --table '{item}'", hint="give TARGET=PATH")
        args.tables[load_target(name).name] = path
    if args.jobs < 1 or args.windows < 0 or args.window_layers < 1:
        raise DlfusionError("--jobs and --window-layers must be at least 1, --windows at least 0")


def main(argv: Sequence[str] | None = None) -> int:
    from dlfusion.cli import run_cli

    argv = list(sys.argv[1:] if argv is None else argv)

    def body() -> None:
        args = parser().parse_args(argv)
        check_args(args)
        command = shlex.join(["python", "benchmarks/study.py", *argv])
        figures = [args.results.parent / "figures" / f"study-{t}.png" for t in args.target_names]
        commit = git_commit([args.out, args.cache_dir, args.plans, args.results, *figures])
        t0 = time.perf_counter()
        for given in args.targets_given:
            run_target(given, args.model_list, args)
        assemble(args, command, commit)
        log(f"wrote {args.results} in {time.perf_counter() - t0:.0f} s")

    return run_cli(PROG, body, lambda: None)


if __name__ == "__main__":
    sys.exit(main())
