"""The backfilled fleet as OpenMetrics text, for `promtool tsdb create-blocks-from openmetrics`.

`bench/history_vs_prometheus.py` loads Prometheus with it: the same generator and seed as
`vigil backfill`, so both systems hold the very same values.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TextIO

from vigil.backfill import DAY, Fleet


def prometheus_name(name: str) -> str:
    """An OpenTelemetry name as Prometheus spells it (dots and other marks to underscores)."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def write_openmetrics(
    fleet: Fleet, out: TextIO, *, steps: tuple[int, int] | None = None, chunk_rows: int = 1_000_000
) -> int:
    """The same samples as OpenMetrics text for `promtool tsdb create-blocks-from openmetrics`:
    one gauge family per metric, labels as Prometheus names them, time-major (each series in time
    order), times in seconds, `# EOF` last. `steps`: only the steps [i0, i1). Returns the samples written."""
    first, last = steps or (0, fleet.steps)
    written = 0
    for name in fleet.spec.metrics:
        family = prometheus_name(name)
        out.write(f"# TYPE {family} gauge\n")
        prefixes = [
            family
            + "{"
            + ",".join(
                f'{prometheus_name(k)}="{v}"'
                for k, v in sorted({**fleet.resources[g], **fleet.attributes[g]}.items())
                if k != "service.name"
            )
            + "}"
            for g in range(fleet.spec.gpus)
        ]
        span = max(1, chunk_rows // fleet.spec.gpus)
        for i0 in range(first, last, span):
            i1 = min(last, i0 + span)
            values = fleet.values(i0, i1)[name]
            for t, row in zip(fleet.times(i0, i1).tolist(), values.tolist(), strict=True):
                out.write("".join(f"{p} {_number(v)} {t}\n" for p, v in zip(prefixes, row, strict=True)))
                written += len(row)
    out.write("# EOF\n")
    return written


def day_ranges(fleet: Fleet) -> list[tuple[int, int]]:
    """Step ranges split at UTC midnights. promtool re-reads its whole input for every 2-hour block it
    writes, so a month in one file costs 360 passes; a file per day costs about 12 of a day each."""
    step = fleet.spec.step
    cuts = [0]
    midnight = -(-fleet.start // DAY) * DAY
    while midnight < fleet.end:
        cut = -(-(midnight - fleet.start) // step)
        if 0 < cut < fleet.steps:
            cuts.append(cut)
        midnight += DAY
    cuts.append(fleet.steps)
    return list(itertools.pairwise(cuts))


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def openmetrics_file(fleet: Fleet, path: Path, steps: tuple[int, int] | None = None) -> int:
    with path.open("w", buffering=4 * 2**20) as out:
        return write_openmetrics(fleet, out, steps=steps)
