"""Per-sample composition offsets of an MP4/MOV video track, read from its sample tables (no demuxing).

An MP4 stores every sample's decode timestamp implicitly (`stts`) and the offset from decode to presentation time
separately (`ctts`, present when frames are reordered, e.g. B-frames). FFmpeg's index of an MP4 stream
(`stream.index_entries`) has the decode timestamps and keyframe flags of every sample but not these offsets; with
them, `data.video.frame_index` builds a long MP4's frame index without reading 100,000 packets.

Only plain (non-fragmented) files are read: a movie with `mvex` (fragments) gives None, as does anything
malformed, so callers fall back to demuxing.
"""

from __future__ import annotations

import dataclasses
import os
import struct

import numpy as np

_MAX_MOOV_BYTES = 1 << 30


class _Malformed(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class SampleTable:
    """What the sample tables say of one track: samples (from `stsz`), composition offsets (N,) int64 in
    decode order (zeros without `ctts`), and whether the track has sample groups (`sbgp`, e.g. open-GOP
    random-access points, which FFmpeg may also flag as keyframes)."""

    track_id: int
    timescale: int
    num_samples: int
    composition_offsets: np.ndarray
    has_sample_groups: bool


def _box_header(head, pos: int, end: int) -> tuple[bytes, int, int]:
    """(type, header bytes, box size) of the box whose header is at head[pos:], its parent ending at `end`
    (offsets in the same coordinates); _Malformed when the header is cut or the box overruns its parent."""
    if pos + 8 > len(head):
        raise _Malformed("truncated box header")
    size, kind = struct.unpack_from(">I4s", head, pos)
    header = 8
    if size == 1:
        if pos + 16 > len(head):
            raise _Malformed("truncated box header")
        size, header = struct.unpack_from(">Q", head, pos + 8)[0], 16
    elif size == 0:  # to the end of the parent
        size = end - pos
    return kind, header, size


def _boxes(buf: memoryview, start: int, end: int):
    """(type, payload start, box end) of the boxes in buf[start:end]."""
    pos = start
    while pos + 8 <= end:
        kind, header, size = _box_header(buf, pos, end)
        if size < header or pos + size > end:
            raise _Malformed(f"box {kind!r} of {size} bytes at {pos} overruns its parent")
        yield kind, pos + header, pos + size
        pos += size


def _child(buf, start, end, kind):
    for k, s, e in _boxes(buf, start, end):
        if k == kind:
            return s, e
    return None


def _read_moov(path) -> bytes | None:
    """The top-level `moov` box's payload, None when there is none (reads box headers only, skipping `mdat`)."""
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        pos = 0
        while pos + 8 <= file_size:
            f.seek(pos)
            head = f.read(16)
            # header offsets relative to `pos`: the parent (the file) ends file_size - pos bytes on
            kind, header, size = _box_header(head, 0, file_size - pos)
            if size < header or pos + size > file_size:
                return None
            if kind == b"moov":
                if size - header > _MAX_MOOV_BYTES:
                    return None
                f.seek(pos + header)
                return f.read(size - header)
            pos += size
    return None


def _track_table(buf: memoryview, start: int, end: int) -> SampleTable | None:
    tkhd = _child(buf, start, end, b"tkhd")
    mdia = _child(buf, start, end, b"mdia")
    if tkhd is None or mdia is None:
        return None
    track_id = struct.unpack_from(">I", buf, tkhd[0] + (20 if buf[tkhd[0]] == 1 else 12))[0]
    mdhd = _child(buf, *mdia, b"mdhd")
    minf = _child(buf, *mdia, b"minf")
    if mdhd is None or minf is None:
        return None
    timescale = struct.unpack_from(">I", buf, mdhd[0] + (20 if buf[mdhd[0]] == 1 else 12))[0]
    stbl = _child(buf, *minf, b"stbl")
    if stbl is None:
        return None
    stsz = _child(buf, *stbl, b"stsz")
    if stsz is None:
        return None
    num_samples = struct.unpack_from(">I", buf, stsz[0] + 8)[0]
    offsets = np.zeros(num_samples, np.int64)
    ctts = _child(buf, *stbl, b"ctts")
    if ctts is not None:
        count = struct.unpack_from(">I", buf, ctts[0] + 4)[0]
        if ctts[0] + 8 + 8 * count > ctts[1]:
            raise _Malformed("ctts entries overrun the box")
        runs = np.frombuffer(buf, ">i4", 2 * count, ctts[0] + 8).reshape(count, 2).astype(np.int64)
        lengths = runs[:, 0]
        if np.any(lengths < 0) or lengths.sum() != num_samples:
            return None  # FFmpeg repairs such tables in its own way: leave it to demuxing
        offsets = np.repeat(runs[:, 1], lengths)
    has_groups = _child(buf, *stbl, b"sbgp") is not None
    return SampleTable(int(track_id), int(timescale), int(num_samples), offsets, has_groups)


def read_sample_table(path, track_id: int) -> SampleTable | None:
    """The sample table of track `track_id` of the MP4/MOV file at `path`; None when the file is not a plain MP4
    (no `moov`, fragmented, malformed) or has no such track."""
    try:
        moov = _read_moov(os.fspath(path))
        if moov is None:
            return None
        buf = memoryview(moov)
        if _child(buf, 0, len(buf), b"mvex") is not None:
            return None
        for kind, s, e in _boxes(buf, 0, len(buf)):
            if kind == b"trak":
                table = _track_table(buf, s, e)
                if table is not None and table.track_id == track_id:
                    return table
    except (_Malformed, struct.error, ValueError, OSError):
        return None
    return None
