"""The importer's host memory is bounded by its largest tensor, not by the model.

A ~0.5 GB InternVL3-layout checkpoint (experiments/import_memory.py, preset "small": 32000 x 512 fp32 embedding and
lm_head, 32 LLM layers, 4 shards) is converted in a fresh child process, whose peak RSS over its own pre-import
baseline must stay within a few largest tensors plus a constant (the source read, its transposed copy, tensorstore's
write buffers; allocator and thread overhead), far below the model size. The import that held every converted
tensor until it saved (plus orbax's defensive copy of them) peaked at about 3x the model here.
"""

from __future__ import annotations

import numpy as np

from experiments import import_memory
from liteframe_jax.checkpoints import store


def test_import_peak_rss_is_a_few_largest_tensors_not_the_model(tmp_path):
    summary = import_memory.write_synthetic(tmp_path / "src", preset="small", dtype="fp32", num_shards=4)
    model, largest = summary["model_bytes"], summary["largest_tensor_bytes"]
    assert summary["shards"] == 4 and model > 450e6 and largest < model / 6  # a model, not one big tensor
    result = import_memory.measure_import(tmp_path / "src", tmp_path / "out")
    # measured: ~0.33 GB = 5x largest, 0.64x model (of which ~0.1 GB is tensorstore's OCDBT cache pool)
    assert result["import_bytes"] < 4 * largest + 160 * 2 ** 20, result
    assert result["import_bytes"] < 0.8 * model, result  # was ~3x the model
    stored = store.stored_arrays(tmp_path / "out")
    assert len(stored) == summary["tensors"]  # every tensor written, nothing dropped
    assert sum(int(np.prod(a.shape)) * a.dtype.itemsize for a in stored.values()) == model
