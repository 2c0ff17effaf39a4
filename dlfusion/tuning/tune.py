"""The tuner: every strategy on one model and target, measured alike.

    report = tune(TuneOptions("alexnet", strategies=["baseline", "cores-only", "dlfusion"]))
    print(report.text())
    write_outputs(report, "tune")

All strategies share one `Measurer` (one tuning-record cache, one worker
pool). For each strategy the tuner records

- the wall time of its search (planning only);
- the plan's latency: the sum of its kernels' measured costs. Strategies
  that measure report it themselves; the plan of one that does not
  (`baseline`, `fusion-only`, `dlfusion`) is measured after its search, and
  that evaluation is not counted as the search's work;
- `configurations`: the distinct kernel configurations (layers x core
  number) the search asked the measurer for, whether cached or not, so the
  figure does not depend on the cache; 0 for the strategies that never call
  the simulator while planning;
- `simulated`: how many of those were simulated in this run (cache misses);
- the speedup over `baseline` (every layer alone on one core; evaluated even
  when not asked for), the gap to the best plan found, the number of kernels;
- with `verify`: whether the compiled plan fits on chip and the max relative
  error of its simulated outputs against onnxruntime.

A strategy that stops with an error (an `exhaustive` search past its guard, a
missing characterization table) is recorded as not finished, with its
message, and the others go on.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dlfusion.cli import AtomicOutput
from dlfusion.errors import DlfusionError
from dlfusion.grouping import Group, LayerGraph
from dlfusion.targets import AcceleratorTarget

DEFAULT_STRATEGIES = ("baseline", "cores-only", "fusion-only", "dlfusion", "dp")
REFERENCE = "baseline"


@dataclass
class TuneOptions:
    """What `tune` runs: the model (zoo name or ONNX file), the target, the
    strategies and their knobs, and how to measure."""

    model: str
    strategies: Sequence[str] = DEFAULT_STRATEGIES
    target: str = "mlu100"
    jobs: int = 1
    cache: str | None = None
    max_group: int = 8
    max_configs: int = 20_000
    space: str = "auto"
    core_choices: Sequence[int] | None = None
    table: str | None = None
    verify: bool = False
    seed: int = 0
    progress: bool = False
    log: Callable[[str], None] | None = None

    def strategy_options(self) -> dict:
        """The `StrategyContext.options` every strategy gets."""
        opts: dict = {"max_group": self.max_group, "max_configs": self.max_configs, "space": self.space}
        if self.core_choices:
            opts["core_choices"] = list(self.core_choices)
        if self.table:
            opts["table"] = self.table
        opts["log"] = self.log if self.log is not None else False
        return opts


@dataclass
class StrategyResult:
    """One strategy's outcome (see the module docstring for the figures)."""

    strategy: str
    finished: bool = True
    message: str = ""
    groups: list[Group] = field(default_factory=list)
    search_s: float = 0.0
    latency_us: float | None = None
    configurations: int = 0
    simulated: int = 0
    evaluation_simulated: int = 0
    stats: dict = field(default_factory=dict)
    speedup: float | None = None
    gap_pct: float | None = None
    fits: bool | None = None
    max_rel_error: float | None = None
    simulated_us: float | None = None

    @property
    def kernels(self) -> int:
        return len(self.groups)

    def to_json(self, plan_path: str | None) -> dict:
        doc = {
            "strategy": self.strategy,
            "finished": self.finished,
            "message": self.message,
            "search_s": round(self.search_s, 3),
            "latency_us": self.latency_us,
            "speedup": self.speedup,
            "gap_pct": self.gap_pct,
            "kernels": self.kernels,
            "configurations": self.configurations,
            "simulated": self.simulated,
            "evaluation_simulated": self.evaluation_simulated,
            "plan": plan_path,
            "stats": self.stats,
        }
        if self.fits is not None:
            doc["verify"] = {"fits": self.fits, "max_rel_error": self.max_rel_error,
                             "simulated_us": self.simulated_us}
        return doc


@dataclass
class TuneReport:
    """Every strategy's result on one model and target."""

    model: str
    source: str
    layers: int
    target: AcceleratorTarget
    core_choices: list[int]
    options: TuneOptions
    graph: LayerGraph
    results: list[StrategyResult]
    baseline: StrategyResult
    cache: str | None
    simulated: int = 0
    cache_records: int = 0
    wall_s: float = 0.0

    @property
    def stem(self) -> str:
        return f"{self.model}-{self.target.name}"

    def best(self) -> StrategyResult:
        done = [r for r in self.results if r.finished] + [self.baseline]
        return min(done, key=lambda r: r.latency_us)  # type: ignore[arg-type, return-value]

    def headline(self) -> str:
        cache = f"cache {self.cache} ({self.cache_records} records)" if self.cache else "no cache"
        return (
            f"{self.model} on {self.target.name} ({self.target.cores} cores, core choices "
            f"{','.join(map(str, self.core_choices))}): {self.layers} layers; baseline "
            f"{self.baseline.latency_us:.1f} us; {self.simulated} new simulations; {cache}; "
            f"{self.wall_s:.1f} s"
        )

    # -- the table ---------------------------------------------------------------

    def columns(self) -> list[str]:
        cols = ["strategy", "search s", "latency us", "speedup", "gap %", "kernels", "configs", "new sims"]
        if self.options.verify:
            cols += ["fits", "max rel err"]
        return cols

    def rows(self) -> list[list[str]]:
        out = []
        for r in self.results:
            if not r.finished:
                out.append([r.strategy, f"{r.search_s:.2f}", "not finished"] + [""] * (len(self.columns()) - 3))
                continue
            row = [
                r.strategy, f"{r.search_s:.2f}", f"{r.latency_us:.1f}", f"{r.speedup:.2f}x",
                f"{r.gap_pct:.1f}", str(r.kernels), str(r.configurations), str(r.simulated),
            ]
            if self.options.verify:
                row += ["yes" if r.fits else "NO",
                        "" if r.max_rel_error is None else f"{r.max_rel_error:.1e}"]
            out.append(row)
        return out

    def notes(self) -> list[str]:
        notes = [f"{r.strategy}: {r.message}" for r in self.results if r.message]
        if all(r.strategy != REFERENCE for r in self.results):
            notes.append(f"speedups are over baseline (every layer alone on 1 core): "
                         f"{self.baseline.latency_us:.1f} us")
        return notes

    def text(self) -> str:
        """The table as aligned text (what the command prints)."""
        cols, rows = self.columns(), self.rows()
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

        out = [self.headline(), "", line(cols), "  ".join("-" * w for w in widths)]
        out += [line(r).rstrip() for r in rows]
        notes = self.notes()
        if notes:
            out += ["", *notes]
        return "\n".join(out) + "\n"

    def markdown(self) -> str:
        """The same table in Markdown."""
        cols, rows = self.columns(), self.rows()
        out = [f"# {self.model} on {self.target.name}", "", self.headline(), ""]
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(cols))) + "|")
        out += ["| " + " | ".join(r) + " |" for r in rows]
        notes = self.notes()
        if notes:
            out += ["", *(f"- {n}" for n in notes)]
        return "\n".join(out) + "\n"

    def to_json(self, plan_paths: dict[str, str]) -> dict:
        best = self.best()
        return {
            "model": self.model,
            "source": self.source,
            "layers": self.layers,
            "target": self.target.name,
            "target_digest": self.target.digest,
            "cores": self.target.cores,
            "core_choices": self.core_choices,
            "options": {
                "strategies": list(self.options.strategies), "jobs": self.options.jobs,
                "max_group": self.options.max_group, "max_configs": self.options.max_configs,
                "space": self.options.space, "verify": self.options.verify, "seed": self.options.seed,
            },
            "cache": self.cache,
            "simulated": self.simulated,
            "wall_s": round(self.wall_s, 3),
            "baseline_us": self.baseline.latency_us,
            "best": {"strategy": best.strategy, "latency_us": best.latency_us},
            "strategies": [r.to_json(plan_paths.get(r.strategy)) for r in self.results],
        }


# --------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------


class SearchProgress:
    """A tqdm bar on stderr for one strategy's search. It follows the
    search's own report (`dp`, `exhaustive`: groups of layers measured) once
    it gives one, else the measurer's (kernel configurations simulated in the
    current batch, as `cores-only` makes them)."""

    def __init__(self, desc: str, enabled: bool):
        self.desc = desc
        self.enabled = enabled
        self.bar = None
        self.source = ""

    def search(self, done: int, total: int) -> None:
        self._show("search", done, total, "group")

    def measured(self, done: int, total: int) -> None:
        if self.source != "search":
            self._show("measurer", done, total, "kernel")

    def _show(self, source: str, done: int, total: int, unit: str) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit=unit, file=sys.stderr,
                            dynamic_ncols=True, leave=False)
        if source != self.source or self.bar.total != total:
            self.bar.unit = unit
            self.bar.reset(total=total)
            self.source = source
        self.bar.update(done - self.bar.n)  # tqdm limits the redraws

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# --------------------------------------------------------------------------
# running the strategies
# --------------------------------------------------------------------------


def check_strategies(names: Sequence[str]) -> list[str]:
    """The strategies in order, once each; an unknown name is an error that
    lists the valid ones."""
    from dlfusion.tuning.strategies import strategy_names

    valid = strategy_names()
    out: list[str] = []
    for name in names:
        if name not in valid:
            raise DlfusionError(f"unknown strategy '{name}'", hint=f"choose one of {', '.join(valid)}")
        if name not in out:
            out.append(name)
    if not out:
        raise DlfusionError("no strategy to run", hint=f"choose one of {', '.join(valid)}")
    return out


def _jsonable(stats: dict) -> dict:
    """The entries of a strategy's stats that JSON can hold."""
    out = {}
    for k, v in stats.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[k] = v
    return out


def run_strategy(name: str, graph: LayerGraph, target: AcceleratorTarget, measurer,
                 options: dict, progress: SearchProgress) -> StrategyResult:
    """Search with one strategy and measure its plan."""
    from dlfusion.passes.fuse_layers import check_cover, plan_latency, run_order
    from dlfusion.tuning.strategies import StrategyContext, get_strategy

    run = get_strategy(name)
    sctx = StrategyContext(target, measurer, dict(options, progress=progress.search))
    result = StrategyResult(name)
    measurer.progress = progress.measured
    t0 = time.perf_counter()
    try:
        with measurer.tally() as search:
            groups = run(graph, sctx)
    except DlfusionError as exc:
        result.finished, result.message = False, f"not finished: {exc}"
        return result
    finally:
        result.search_s = time.perf_counter() - t0
        measurer.progress = None
        progress.close()
    check_cover(graph, groups, f"strategy '{name}'")
    result.groups = run_order(graph, groups, f"strategy '{name}'")
    result.configurations, result.simulated = search.configurations, search.simulated
    result.stats = _jsonable(sctx.stats)
    latency = sctx.stats.get("latency_us")
    if latency is None:
        with measurer.tally() as evaluation:
            latency = plan_latency(graph, result.groups, target, measurer, "", 1)
        result.evaluation_simulated = evaluation.simulated
    result.latency_us = float(latency)
    return result


def verify_result(result: StrategyResult, loaded, target: AcceleratorTarget, seed: int) -> None:
    """Compile the plan, check it fits on chip and compare its simulated
    outputs with onnxruntime's."""
    from dlfusion.models import compile_plan, verify

    try:
        module = compile_plan(loaded, result.groups, target)
    except DlfusionError as exc:
        result.fits = False
        result.message = (result.message + "; " if result.message else "") + f"does not compile: {exc}"
        return
    result.fits = True
    check = verify(loaded, module, loaded.ctx, seed)
    result.max_rel_error, result.simulated_us = check.max_rel_error, check.latency_us


def _rank(results: Sequence[StrategyResult], baseline_us: float) -> None:
    done = [r for r in results if r.finished]
    best = min([r.latency_us for r in done] + [baseline_us])  # type: ignore[type-var]
    for r in done:
        r.speedup = baseline_us / r.latency_us  # type: ignore[operator]
        r.gap_pct = 100.0 * (r.latency_us - best) / best  # type: ignore[operator]


def tune(options: TuneOptions, measurer=None) -> TuneReport:
    """Run every strategy of `options` on its model (see the module
    docstring). A given `measurer` is used (and left open); else one is made
    for the run and closed at its end."""
    from dlfusion.models import load_model
    from dlfusion.targets import load_target
    from dlfusion.tuning.measure import Measurer
    from dlfusion.tuning.strategies import StrategyContext

    t0 = time.perf_counter()
    names = check_strategies(options.strategies)
    target = load_target(options.target)
    sopts = options.strategy_options()
    choices = StrategyContext(target, None, sopts).core_choices()  # bad choices fail first
    loaded = load_model(options.model, seed=options.seed)
    graph = LayerGraph.of(loaded.module)
    own = measurer is None
    if own:
        measurer = Measurer.create(target, cache=options.cache, jobs=options.jobs)
    try:
        before = measurer.measurements
        results = []
        for name in names:
            progress = SearchProgress(name, options.progress)
            results.append(run_strategy(name, graph, target, measurer, sopts, progress))
            if options.log is not None:
                options.log(_summary(results[-1]))
        baseline = next((r for r in results if r.strategy == REFERENCE), None)
        if baseline is None:
            baseline = run_strategy(REFERENCE, graph, target, measurer, sopts, SearchProgress("", False))
        _rank(results, baseline.latency_us)  # type: ignore[arg-type]
        if options.verify:
            for r in results:
                if r.finished:
                    verify_result(r, loaded, target, options.seed)
        simulated = measurer.measurements - before
        records = len(measurer.cache.records)
    finally:
        if own:
            measurer.close()
    return TuneReport(
        model=loaded.name, source=options.model, layers=len(graph), target=target, core_choices=choices,
        options=options, graph=graph, results=results, baseline=baseline,
        cache=str(options.cache) if options.cache else None, simulated=simulated,
        cache_records=records, wall_s=time.perf_counter() - t0,
    )


def _summary(r: StrategyResult) -> str:
    if not r.finished:
        return f"{r.strategy}: {r.message}"
    text = (f"{r.strategy}: {r.latency_us:.1f} us in {r.kernels} kernels; searched {r.search_s:.2f} s, "
            f"{r.configurations} configurations ({r.simulated} simulated)")
    if r.evaluation_simulated:
        text += f"; its plan's kernels: {r.evaluation_simulated} simulated"
    return text


# --------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------


def plot_png(report: TuneReport) -> bytes:
    """A bar chart of the latency per strategy, each bar annotated with its
    speedup over baseline (a dashed line when baseline is not a bar)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    done = [r for r in report.results if r.finished]
    fig = Figure(figsize=(1.6 + 1.1 * max(1, len(done)), 3.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    xs = range(len(done))
    lat = [r.latency_us for r in done]
    best = report.best()
    colors = ["tab:green" if r is best else "tab:blue" for r in done]
    bars = ax.bar(xs, lat, color=colors)
    for bar, r in zip(bars, done):
        ax.annotate(f"{r.speedup:.2f}x", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    if all(r.strategy != REFERENCE for r in done):
        ax.axhline(report.baseline.latency_us, ls="--", color="gray", lw=1, label="baseline")
        ax.legend(fontsize=8)
    ax.set_xticks(list(xs), [r.strategy for r in done], rotation=20, fontsize=8)
    ax.set_ylabel("latency (us)")
    ax.set_ylim(0, max(lat + [report.baseline.latency_us]) * 1.15)
    ax.set_title(f"{report.model} on {report.target.name}: latency per strategy "
                 f"(speedup over baseline)", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def plan_of(report: TuneReport, result: StrategyResult):
    from dlfusion.tuning.plan import Plan

    return Plan.for_graph(
        report.graph, [Group(list(g.layers), g.cores) for g in result.groups], report.target.name,
        result.strategy, latency_us=result.latency_us, stats=result.stats,
    )


class StagedFiles:
    """Files written next to their destinations and renamed into place
    together by `commit()`, so an error leaves none of them half-written."""

    def __init__(self) -> None:
        self._outputs: list[AtomicOutput] = []

    def write(self, path: Path, data: str | bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            out = AtomicOutput(str(path), "wb" if isinstance(data, bytes) else "w")
        except OSError as exc:
            raise DlfusionError(f"cannot write '{path}': {exc.strerror or exc}") from None
        self._outputs.append(out)
        out.write(data)
        out.close()

    def commit(self) -> None:
        for out in self._outputs:
            out.commit()

    def discard(self) -> None:
        for out in self._outputs:
            out.discard()


def write_outputs(report: TuneReport, out_dir: str | Path, plot: bool = True) -> list[Path]:
    """`<out>/<model>-<target>.json`, `.md`, `.png` and every finished plan as
    `<out>/plans/<model>-<target>-<strategy>.json`; all or nothing."""
    out = Path(out_dir)
    staged = StagedFiles()
    paths: list[Path] = []
    plan_paths: dict[str, str] = {}

    def put(path: Path, data: str | bytes) -> None:
        staged.write(path, data)
        paths.append(path)

    try:
        for r in report.results:
            if r.finished:
                path = out / "plans" / f"{report.stem}-{r.strategy}.json"
                put(path, json.dumps(plan_of(report, r).to_json(), indent=1) + "\n")
                plan_paths[r.strategy] = str(path)
        put(out / f"{report.stem}.json", json.dumps(report.to_json(plan_paths), indent=1) + "\n")
        put(out / f"{report.stem}.md", report.markdown())
        if plot:
            put(out / f"{report.stem}.png", plot_png(report))
        staged.commit()
    except OSError as exc:
        staged.discard()
        raise DlfusionError(f"cannot write the results: {exc.strerror or exc}", where=str(out)) from None
    except BaseException:
        staged.discard()
        raise
    return paths
