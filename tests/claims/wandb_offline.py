"""Read the records of an offline W&B run file (run-<id>.wandb): W&B's log format of protobuf records.

The file is a 7-byte header, then 32 KiB blocks of records; each record has a 7-byte header (CRC32, little-endian
length, type: 1 full, 2 first, 3 middle, 4 last piece) before its bytes.
"""
from __future__ import annotations

import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

FILE_HEADER = 7
BLOCK = 32768
RECORD_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pieces, position = [], b"", FILE_HEADER
    while position + RECORD_HEADER <= len(data):
        left_in_block = BLOCK - position % BLOCK
        if left_in_block < RECORD_HEADER:  # the rest of a block too short for a header is padding
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + RECORD_HEADER])
        body = data[position + RECORD_HEADER:position + RECORD_HEADER + length]
        position += RECORD_HEADER + length
        if kind == 0 and length == 0:
            continue
        pieces = body if kind in (FULL, FIRST) else pieces + body
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            records.append(record)
    return records


def run_record(path: Path) -> wandb_internal_pb2.RunRecord:
    return next(r.run for r in read_records(path) if r.WhichOneof("record_type") == "run")
