"""A child process for the crash tests: one exactly-once invoice `save` on an X3 sandbox, optionally killed.

    python -m x3_shopify_dagster_tests.ledger.crash_worker < job.json

stdin: one JSON line (`Job` fields; the X3 password travels here, never on the command line), then, when
`wait_for_go` is set, a line "go" once the parent has seen every worker's "ready". stdout: "ready", then
either "crash:<step>" followed by `os._exit(1)` at the protocol step named by `crash_at`, or one JSON line
with the outcome: {"status": ..., "document": ..., "sends": n, "lookups": n}.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from x3_shopify_dagster.storage import ConnectorDatabase
from x3_shopify_dagster.storage.exactly_once import LeaseHeld, ProtocolStep, get_operation, run_exactly_once
from x3_shopify_dagster.storage.ledger import PostingLedger
from x3_shopify_dagster_tests.ledger._support import (
    InvoiceWriter,
    Job,
    OffsetClock,
    X3Endpoint,
    classify_x3_error,
)

CRASH_EXIT_CODE = 1


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> int:
    job = Job(**json.loads(sys.stdin.readline()))
    crash_at = ProtocolStep(job.crash_at) if job.crash_at else None
    ledger = PostingLedger(ConnectorDatabase(job.database_url), clock=OffsetClock())
    writer = InvoiceWriter(X3Endpoint(**job.x3).client(), job.reference)
    get_operation(ledger, job.key)  # connect now, so that racing workers start level after "go"
    _say("ready")
    if job.wait_for_go and sys.stdin.readline().strip() != "go":
        return 2

    def on_step(step: ProtocolStep) -> None:
        if step is crash_at:
            _say(f"crash:{step.value}")
            os._exit(CRASH_EXIT_CODE)  # no cleanup, no rollback, no lease release: a killed process

    report: dict[str, Any]
    try:
        outcome = run_exactly_once(
            ledger,
            job.key,
            owner=job.owner,
            lease_s=job.lease_s,
            send=writer.send,
            lookup=writer.lookup,
            remote_reference=job.reference,
            record_id=job.record_id,
            classify_error=classify_x3_error,
            on_step=on_step,
        )
        report = {"status": outcome.status.value, "document": outcome.document}
    except LeaseHeld:
        report = {"status": "lease_held", "document": None}
    _say(json.dumps({**report, "sends": writer.sends, "lookups": writer.lookups}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
