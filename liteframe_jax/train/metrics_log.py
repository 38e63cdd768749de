"""Run logging: a console progress bar (rate, ETA, loss), WORKDIR/metrics.jsonl and TensorBoard event files.
Only process 0 writes."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from liteframe_jax.files import atomic_write_text


def _scalar(v) -> float | int | bool:
    a = np.asarray(v)
    if a.dtype == bool:
        return bool(a)
    return int(a) if np.issubdtype(a.dtype, np.integer) else float(a)


class MetricsLogger:
    def __init__(self, workdir: str | Path, total_steps: int, start_step: int = 0, enabled: bool = True,
                 progress: bool = True):
        self.enabled = enabled
        self.path = Path(workdir) / "metrics.jsonl"
        self.bar = None
        self.writer = None
        if not enabled:
            return
        if self.path.exists():  # a resumed run drops records past its restored step, so the file stays one run
            keep = [line for line in self.path.read_text().splitlines()
                    if line and json.loads(line).get("step", 0) <= start_step]
            atomic_write_text(self.path, "".join(k + "\n" for k in keep))
        from tensorboardX import SummaryWriter
        self.writer = SummaryWriter(str(Path(workdir) / "tensorboard"))
        if progress:
            from tqdm import tqdm
            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                            file=sys.stderr, desc="train")
        self.t0, self.last_step = time.time(), start_step

    def advance(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)

    def log(self, step: int, metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        record = {"step": int(step), **{f"{prefix}{k}": _scalar(v) for k, v in metrics.items()}}
        if not self.enabled:
            return record
        record["time"] = round(time.time() - self.t0, 3)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for k, v in record.items():
            if (k not in ("step", "time") and isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(v)):
                self.writer.add_scalar(k, v, step)
        if self.bar is not None and "loss" in record:
            self.bar.set_postfix(loss=f"{record['loss']:.4g}")
        return record

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
