"""Decoding a data config once into a frame store (data.frame_store): what experiments.extract_frames runs."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

from liteframe_jax.data.frame_store import FrameStoreWriter
from liteframe_jax.data.pipeline import (DataConfig, SkipStats, frame_store_identity, load_examples, printable,
                                         store_examples)


def extract_frame_store(cfg: DataConfig, out: str, frame_size: str = "native", encoding: str = "raw",
                        jpeg_quality: int = 95, overwrite: bool = False, progress: bool = True) -> dict:
    """Writes the frame store of DataConfig `cfg` at `out`: every example (all splits) as the pipeline decodes it,
    never augmented, at frame_size "native" or "config" (cfg.image_size), `encoding` "raw" or "jpeg"; skipped
    examples recorded with their reason and named on stderr, progress on stderr unless progress=False. Returns
    {"stored", "skipped", "skips" (SkipStats), "bytes" (records written), "seconds"}. DataError / ConfigError for
    unusable data, FrameStoreError for an existing `out` without overwrite."""
    cfg = cfg.replace(frame_store="").validate()
    examples = load_examples(cfg)
    size = "native" if frame_size == "native" else tuple(cfg.image_size)
    metadata = {"data": {**cfg.to_dict(), **frame_store_identity(cfg, size, examples)["data"]}}
    skips = SkipStats()
    t0 = time.perf_counter()
    with FrameStoreWriter(out, len(examples), cfg.num_frames, frame_size=size, encoding=encoding,
                          jpeg_quality=jpeg_quality, metadata=metadata, overwrite=overwrite) as writer:
        with tqdm(total=len(examples), unit="clip", desc="extracting frames", file=sys.stderr,
                  disable=not progress) as bar:
            for ex in store_examples(cfg, size, examples):
                index, source = int(ex["index"]), tuple(int(v) for v in ex["source"])
                if "skipped" in ex:
                    reason = str(ex["skipped"])
                    skips.record(f"{examples.paths[index]}: {reason}")
                    writer.skip(index, reason, source)
                    bar.write(f"skipped {printable(examples.paths[index])}: {printable(reason)}", file=sys.stderr)
                else:
                    skips.succeeded += 1
                    writer.write(index, ex["frames"], ex["frame_indices"], source)
                bar.update(1)
        stored_bytes = writer.bytes_written
    return {"stored": skips.succeeded, "skipped": skips.count, "skips": skips, "bytes": stored_bytes,
            "seconds": time.perf_counter() - t0}
