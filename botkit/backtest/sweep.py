"""Sweeps: one backtest per parameter set, in parallel processes, one result row each.

A sweep is a list of jobs; a job is plain data (the config's settings, the strategy's name, one set of
parameters, the history span, the journal to write) and `run_job` turns one job into one row of plain data.
Nothing else crosses the process boundary, so the executor is replaceable: today a
`concurrent.futures.ProcessPoolExecutor`; any executor with the same `submit`/`map` (a Dask or Ray cluster,
say) can run the same jobs on many machines, given the history folder at the same path on each.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import tomllib
from collections.abc import Iterable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botkit.config import BotConfig, ConfigError


@dataclass(frozen=True)
class Job:
    settings: dict[str, Any]  # the config, as plain data
    params: dict[str, Any]  # this run's strategy parameters (over the config's)
    journal: str
    data: str | None
    interval: str | None
    start_ms: int | None
    end_ms: int | None


def parse_values(spec: str, option: str = "--grid") -> tuple[str, list[Any]]:
    """`name=v1,v2,...` (values read as TOML: numbers stay numbers) -> (name, values)."""
    name, sep, values = spec.partition("=")
    if not sep or not name.strip() or not values.strip():
        raise ConfigError([f"{option} {spec!r}: expected name=value" + ("[,value...]" if option == "--grid" else "")])
    parsed = []
    for raw in values.split(","):
        try:
            parsed.append(tomllib.loads(f"v = {raw.strip()}")["v"])
        except tomllib.TOMLDecodeError:
            parsed.append(raw.strip())  # a bare word: a string
    return name.strip(), parsed


def grid(specs: Iterable[str] = (), file: Path | None = None) -> list[dict[str, Any]]:
    """The parameter sets: the cross product of `--grid name=v1,v2` options, and/or the sets a file lists
    (TOML `[[set]]` tables or a JSON list of objects)."""
    sets: list[dict[str, Any]] = []
    axes = [parse_values(spec) for spec in specs]
    if axes:
        names = [name for name, _ in axes]
        sets += [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(v for _, v in axes))]
    if file is not None:
        try:
            text = Path(file).read_text(encoding="utf-8")
            listed = json.loads(text) if Path(file).suffix == ".json" else tomllib.loads(text).get("set", [])
        except (OSError, ValueError) as exc:
            raise ConfigError([f"--grid-file {file}: {exc}"]) from None
        if not isinstance(listed, list) or not all(isinstance(s, dict) for s in listed):
            raise ConfigError([f"--grid-file {file}: expected a list of parameter tables ([[set]] in TOML)"])
        sets += listed
    return sets


def run_job(job: Job) -> dict[str, Any]:
    """One backtest in this process; its row (the figures, or the one-line error)."""
    from botkit.backtest.runner import run_backtest
    from botkit.runtime.strategy import load_strategy, make_strategy

    row: dict[str, Any] = {"params": job.params, "journal": job.journal}
    try:
        config = BotConfig(**{**job.settings, "params": {**job.settings.get("params", {}), **job.params}})
        strategy = make_strategy(load_strategy(config.strategy), config.params)
        data = Path(job.data) if job.data else None
        results = asyncio.run(run_backtest(config, strategy, Path(job.journal), data=data, interval=job.interval,
                                           start_ms=job.start_ms, end_ms=job.end_ms))  # fmt: skip
    except Exception as exc:  # a row says what went wrong; the sweep goes on
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return row
    row |= {"return": results.total_return, "max_drawdown": results.max_drawdown, "sharpe": results.sharpe,
            "sortino": results.sortino, "trades": len(results.trades), "win_rate": results.win_rate,
            "profit_factor": results.profit_factor, "fees": str(results.fees),
            "equity_end": str(results.equity_end), "liquidations": results.liquidations}  # fmt: skip
    return row


def run_sweep(jobs: list[Job], workers: int, executor: Executor | None = None) -> list[dict[str, Any]]:
    """Every job's row, in the jobs' order."""
    if executor is not None:
        return list(executor.map(run_job, jobs))
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(run_job, jobs))
