"""Sensor back-pressure: a store whose last requested run has not started yet gets no new run this tick.

Each sensor run carries a fixed window. When runs queue up (a busy laptop, a slow X3), requesting one more window
per tick would only lengthen the queue. Instead the store's watermark stays put, and once the queued run starts,
the next tick requests one run covering everything since: the same changes, in fewer and larger runs.
"""

from __future__ import annotations

import dagster as dg

_WAITING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]
STORE_TAG = "x3sd/store"


def stores_with_waiting_runs(context: dg.SensorEvaluationContext, sensor_name: str) -> set[str]:
    """Stores with a run this sensor requested that has not started yet."""
    runs = context.instance.get_runs(
        filters=dg.RunsFilter(statuses=_WAITING, tags={"dagster/sensor_name": sensor_name}), limit=200
    )
    return {run.tags[STORE_TAG] for run in runs if STORE_TAG in run.tags}
