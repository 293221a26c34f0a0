"""Where the benchmark's cases run: in this process (the default) or as Ray tasks.

An executor takes the grid's :class:`~core.bench.plan.CaseSpec` list and a job (a picklable
callable ``job(spec) -> CaseResult`` that never raises for a failing case, see
:class:`core.bench.runner.CaseJob`) and yields each case's :class:`CaseResult` as soon as it is
finished, in the order they finish. Both report how many cases are running, for the progress bar.

``InProcessExecutor`` runs the cases one after another in this process.

``RayExecutor`` submits every case as one Ray task declaring its resources: ``cpus_per_case`` CPUs
(the torch threads the case uses) and, where the cluster has GPUs, a fraction of one
(``gpus_per_case``; by default the cluster's GPUs shared evenly over the cases that fit on its
CPUs). Results stream back through ``ray.wait`` one at a time. Without an address it starts a local
Ray on this machine (``workers`` cases at once, else as many as the CPUs allow) and shuts it down
afterwards; with an address (or ``$RAY_ADDRESS``) it joins that cluster, whose nodes must see this
project at the same path (it is put on the workers' ``PYTHONPATH``), the data folder and, for the
retrain cache to be shared, the cache folder. A Ray session that is already running (e.g. a test's
``ray.init(num_cpus=2)``) is used as it is and left running. A task whose worker dies is retried
once by Ray, then reported as failed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from core.bench.plan import CaseSpec
from core.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class CaseResult:
    """A finished case: its row, or the error that stopped it (one line, and the traceback)."""

    spec: CaseSpec
    row: dict | None
    error: str | None = None
    trace: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


Job = Callable[[CaseSpec], CaseResult]


class InProcessExecutor:
    """Every case in this process, one after another, in the order given."""

    name = "inprocess"

    def __init__(self) -> None:
        self.running = 0
        self.slots = 1

    def __enter__(self) -> "InProcessExecutor":
        return self

    def __exit__(self, *exc) -> None:
        self.running = 0

    def describe(self) -> dict:
        return {"executor": self.name}

    def run(self, specs: Iterable[CaseSpec], job: Job, on_start: Callable[[CaseSpec | None], None] | None = None
            ) -> Iterator[CaseResult]:
        """Yield each case's result; ``on_start(spec)`` just before a case starts."""
        for spec in specs:
            self.running = 1
            if on_start is not None:
                on_start(spec)
            try:
                result = job(spec)
            finally:
                self.running = 0
            yield result


def _remote_case(job: Job, spec: CaseSpec) -> CaseResult:
    """The body of a Ray task: one case (``job`` catches the case's own errors)."""
    return job(spec)


def _import_ray():
    try:
        import ray
    except ImportError as err:
        raise UserError("--executor ray needs Ray; install it with 'pip install -r requirements.txt'.") from err
    return ray


class RayExecutor:
    """Every case a Ray task (see the module docstring for resources, addresses and retries)."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, cpus_per_case: int = 1,
                 gpus_per_case: float | None = None, use_gpu: bool = True):
        if workers is not None and workers < 1:
            raise UserError(f"--workers must be at least 1, got {workers}.")
        if cpus_per_case < 1:
            raise UserError(f"Each case needs at least 1 CPU, got {cpus_per_case}.")
        if gpus_per_case is not None and not 0 <= gpus_per_case <= 1:
            raise UserError(f"The GPU share of a case must be in [0, 1], got {gpus_per_case}.")
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        if self.address and workers is not None:
            raise UserError("--workers sets the size of a local Ray; a cluster joined with --ray-address or "
                            "RAY_ADDRESS has its own size.")
        self.workers, self.cpus_per_case = workers, cpus_per_case
        self.gpus_per_case, self.use_gpu = gpus_per_case, use_gpu
        self.running, self.slots, self._own, self._depth = 0, 1, False, 0

    def __enter__(self) -> "RayExecutor":
        """Start or join Ray (re-entrant: an inner ``with`` reuses the outer one's session)."""
        self._depth += 1
        if self._depth > 1:
            return self
        try:
            return self._start()
        except BaseException:
            self._depth = 0
            raise

    def _start(self) -> "RayExecutor":
        ray = _import_ray()
        if not ray.is_initialized():
            path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
            runtime_env = {"env_vars": {"PYTHONPATH": path}}
            try:
                if self.address:
                    ray.init(address=self.address, runtime_env=runtime_env)
                else:
                    cpus = None if self.workers is None else self.workers * self.cpus_per_case
                    ray.init(address="local", num_cpus=cpus, include_dashboard=False, runtime_env=runtime_env)
            except (ConnectionError, RuntimeError, ValueError) as err:
                if not self.address:
                    raise
                raise UserError(f"Could not join the Ray cluster at {self.address} ({err}).") from err
            self._own = True
        resources = ray.cluster_resources()
        self.cluster_cpus = float(resources.get("CPU", 0))
        self.cluster_gpus = float(resources.get("GPU", 0)) if self.use_gpu else 0.0
        if self.cluster_cpus < self.cpus_per_case:
            self._shutdown()
            raise UserError(f"The Ray cluster has {self.cluster_cpus:g} CPUs; a case needs {self.cpus_per_case}.")
        self.slots = int(self.cluster_cpus // self.cpus_per_case)
        if self.gpus_per_case is None:
            self.gpus = min(1.0, self.cluster_gpus / self.slots) if self.cluster_gpus else 0.0
        else:
            self.gpus = self.gpus_per_case if self.cluster_gpus else 0.0
        if self.gpus:
            self.slots = min(self.slots, int(self.cluster_gpus // self.gpus))
        return self

    def __exit__(self, *exc) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0:
            self._shutdown()

    def _shutdown(self) -> None:
        self.running = 0
        if self._own:
            _import_ray().shutdown()
            self._own = False

    def describe(self) -> dict:
        return {"executor": self.name, "ray_address": self.address or "local", "cluster_cpus": self.cluster_cpus,
                "cluster_gpus": self.cluster_gpus, "cpus_per_case": self.cpus_per_case, "gpus_per_case": self.gpus,
                "cases_at_once": self.slots}

    def run(self, specs: Iterable[CaseSpec], job: Job, on_start: Callable[[CaseSpec | None], None] | None = None
            ) -> Iterator[CaseResult]:
        """Submit every case at once (in the order given, which is the order Ray starts them in),
        then yield results as they finish; ``running`` is the in-flight count capped by the cases
        the cluster fits at once; ``on_start(None)`` once all are submitted. Stopping the iteration
        cancels the cases not yet finished."""
        ray = _import_ray()
        task = ray.remote(_remote_case).options(num_cpus=self.cpus_per_case, num_gpus=self.gpus, max_retries=1)
        job_ref = ray.put(job)
        pending = {task.remote(job_ref, spec): spec for spec in specs}
        self.running = min(len(pending), self.slots)
        if on_start is not None:
            on_start(None)                       # all submitted: the bar shows them running
        try:
            while pending:
                self.running = min(len(pending), self.slots)
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    spec = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as err:  # noqa: BLE001 - a worker that died, an unpicklable result
                        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                        result = CaseResult(spec, None, f"{type(err).__name__}: {first}", str(err))
                    self.running = min(len(pending), self.slots)
                    yield result
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            self.running = 0


# ----------------------------------------------------------------------------- a grid on an executor
def execution_order(specs: list[CaseSpec]) -> list[CaseSpec]:
    """Retrain cases first (the longest, so a parallel run does not end waiting on one), the rest in
    plan order. The rows are stored and reported in plan order whatever the order they ran in."""
    from core.bench.columns import REFERENCE

    return [s for s in specs if s.method == REFERENCE] + [s for s in specs if s.method != REFERENCE]


class GridProgress:
    """One tqdm bar over the grid: cases done of those to run, failed and running in its postfix,
    elapsed and remaining time from tqdm's rate."""

    def __init__(self, total: int, executor, enabled: bool = True):
        from tqdm import tqdm

        self.executor, self.failed = executor, 0
        self.bar = tqdm(total=total, desc="bench", unit="case", disable=not enabled, mininterval=0.5,
                        dynamic_ncols=True)
        self.refresh()

    def refresh(self) -> None:
        self.bar.set_postfix(failed=self.failed, running=self.executor.running, refresh=True)

    def started(self, spec: CaseSpec | None) -> None:
        """A case starts (its label becomes the bar's description), or None: many did."""
        if spec is not None:
            self.bar.set_description(spec.label(), refresh=False)
        self.refresh()

    def finished(self, result: CaseResult) -> None:
        self.failed += not result.ok
        self.bar.update(1)
        self.refresh()

    def close(self) -> None:
        self.bar.close()


def run_grid(specs: list[CaseSpec], executor, job: Job, progress: bool = True, on_result=None) -> list[CaseResult]:
    """Run ``specs`` on ``executor`` (entered here), ``on_result(result)`` as each case finishes;
    returns the results in the order of ``specs``."""
    index = {s.key: i for i, s in enumerate(specs)}
    results: list[CaseResult] = []
    with executor:
        bar = GridProgress(len(specs), executor, progress)
        try:
            for result in executor.run(execution_order(specs), job, on_start=bar.started):
                if on_result is not None:
                    on_result(result)
                results.append(result)
                bar.finished(result)
        finally:
            bar.close()
    return sorted(results, key=lambda r: index[r.spec.key])
