"""The Evidently side of bench/drift.py, run by it in bench/.venv-evidently (Evidently is never installed in
the project's own environments). Reads the reference and current matrices the parent wrote, times
Evidently's data-drift report with one method over every column (process CPU time, as the parent measures
its side), and writes the timings and per-column values as JSON.

    python bench/drift_evidently.py DATA_DIR METHOD OUT_JSON
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    folder, method, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    warnings.simplefilter("ignore")
    from evidently import DataDefinition, Dataset, Report
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType
    from evidently.presets import DataDriftPreset

    reference = np.load(folder / "reference.npy", mmap_mode="r")
    current = np.load(folder / "current.npy", mmap_mode="r")
    columns = [f"f{i:02d}" for i in range(reference.shape[1])]
    ref_df = pd.DataFrame(np.asarray(reference), columns=columns)
    cur_df = pd.DataFrame(np.asarray(current), columns=columns)
    definition = DataDefinition(numerical_columns=columns)

    started = time.process_time()
    report = Report([DataDriftPreset(method=method, threshold=0.1 if method == "psi" else 0.05)])
    snapshot = report.run(Dataset.from_pandas(cur_df, data_definition=definition),
                          Dataset.from_pandas(ref_df, data_definition=definition))
    report_seconds = time.process_time() - started

    # The same statistic through Evidently's stat-test function alone (no report around it).
    stattest = get_stattest(ref_df[columns[0]], cur_df[columns[0]], ColumnType.Numerical, method)
    started = time.process_time()
    values = [float(stattest.func(ref_df[c], cur_df[c], ColumnType.Numerical, 0.05)[0]) for c in columns]
    function_seconds = time.process_time() - started
    out.write_text(json.dumps({
        "report_seconds": report_seconds, "function_seconds": function_seconds, "values": values,
        "report_metrics": len(snapshot.dict().get("metrics", [])),
    }))


if __name__ == "__main__":
    main()
