"""Read an offline W&B run back: the records of its ``run-<id>.wandb`` file.

The file is a LevelDB-style log (32 KiB blocks of chunks with a 7-byte header) of protobuf
``Record`` messages after a 7-byte ``:W&B`` header; wandb ships the message classes.
"""

import json
import struct
import time
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768


def records(path):
    data = Path(path).read_bytes()
    pos, parts = 7, []
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 or pos + 7 + length > len(data):  # the end, or a chunk still being written
            break
        parts.append(data[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def _key(item):
    return "/".join(item.nested_key) if item.nested_key else item.key


class OfflineRun:
    """What one offline run directory recorded: id, config, history rows, artifacts."""

    def __init__(self, run_dir):
        self.id, self.config, self.history, self.artifacts = None, {}, [], []
        self.summary, self.group, self.job_type = {}, None, None
        for record in records(next(Path(run_dir).glob("run-*.wandb"))):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                self.id = record.run.run_id
                self.group, self.job_type = record.run.run_group, record.run.job_type
            elif kind == "config":
                self.config.update({_key(i): json.loads(i.value_json)
                                    for i in record.config.update})
            elif kind == "history":
                self.history.append({_key(i): json.loads(i.value_json)
                                     for i in record.history.item})
            elif kind == "summary":
                self.summary.update({_key(i): json.loads(i.value_json)
                                     for i in record.summary.update})
            elif kind == "artifact":
                self.artifacts.append((record.artifact.name, list(record.artifact.aliases)))

    def steps(self):
        return [row["trainer/global_step"] for row in self.history
                if "trainer/global_step" in row]


def _finished(run_dir):
    path = next(Path(run_dir).glob("run-*.wandb"))
    return any(r.WhichOneof("record_type") == "exit" for r in records(path))


def offline_runs(run_dir, timeout=20.0):
    """The offline runs under ``run_dir/wandb``, once wandb's writer has closed each file."""
    dirs = sorted(Path(run_dir, "wandb").glob("offline-run-*"))
    deadline = time.monotonic() + timeout
    while not all(_finished(d) for d in dirs) and time.monotonic() < deadline:
        time.sleep(0.2)  # wandb's service process may still be flushing after finish()
    return [OfflineRun(d) for d in dirs]
