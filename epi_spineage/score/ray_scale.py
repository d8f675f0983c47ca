"""Scale-out: the same per-member scoring on Ray Data, writing Parquet shards for ``ingest``.

    import ray
    from epi_spineage.score.ray_scale import score_with_ray
    ray.init()                                   # or ray.init(address="auto") on a cluster
    score_with_ray(["/data/pacs"], "models/b4", "shards/", concurrency=8, num_gpus=1)
    # then: python -m epi_spineage.ingest shards/ --db spine.duckdb

``ray.data.from_items`` over the member names -> ``map_batches`` (an actor per worker that loads
the checkpoint once, then reads, decodes, QC-checks, pseudonymises, preprocesses and predicts each
batch with ``members.process_member``, the function the DataLoader workers use) -> ``write_parquet``.
The shards hold the flat result rows, so ``ingest`` loads them with the scorer's own keyed loader:
duplicates across shards are resolved there and re-ingesting adds nothing. Members are read with
``read_reference``: fine for folders and zip files; a tar is re-read per member, so unpack big
tars first. Ray is an optional extra (``pip install 'epi-spineage[ray]'``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from epi_spineage.errors import UserError


class _ScoreBatch:
    """Ray actor: load the checkpoint once; turn a batch of member names into result rows."""

    def __init__(self, model_dir: str, key: bytes, run_id: str, include_non_spine: bool, device: str):
        from epi_spineage.model.checkpoint import load_checkpoint
        from epi_spineage.provenance import model_provenance
        from epi_spineage.score.malloc import keep_freed_memory
        from epi_spineage.score.members import MemberContext

        keep_freed_memory()  # the actor decodes and runs the model: see malloc.py
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.loaded = load_checkpoint(model_dir, map_location=device)
        self.provenance = model_provenance(self.loaded, "cuda-bf16" if device == "cuda" else "cpu")
        self.ctx = MemberContext(
            run_id=run_id, key=key, preprocess_config=self.loaded.preprocess_config, include_non_spine=include_non_spine
        )

    def __call__(self, batch):
        import numpy as np
        import torch

        from epi_spineage.db.results import to_table
        from epi_spineage.imaging import read_reference
        from epi_spineage.score.members import process_member

        rows, arrays = [], []
        for name, size in zip(batch["name"], batch["size"]):
            name = str(name)
            size = None if size is None or (isinstance(size, float) and np.isnan(size)) else int(size)
            try:
                data, err = read_reference(name), None
            except (UserError, OSError) as exc:
                data, err = None, str(exc)
            row, array = process_member(self.ctx, name, size, data, read_error=err)
            rows.append(row)
            arrays.append(array)
        ready = [i for i, a in enumerate(arrays) if a is not None]
        if ready:
            stacked = np.stack([a for a in arrays if a is not None])  # the same order as ``ready``
            mean, sd = self.loaded.predict(torch.from_numpy(stacked))
            for i, m, s in zip(ready, mean, sd):
                rows[i].update(status="scored", spine_age_years=float(m), spine_age_sd_years=float(s))
        for row in rows:
            row.update(self.provenance)
        return to_table(rows)


def score_with_ray(
    archives: Sequence[str | os.PathLike],
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    key: bytes | str | None = None,
    key_file: str | os.PathLike | None = None,
    batch_size: int = 16,
    concurrency: int = 1,
    num_gpus: float = 0,
    num_cpus: float = 1,
    device: str = "auto",
    include_non_spine: bool = False,
) -> Path:
    """Score ``archives`` on the running Ray cluster into Parquet shards under ``out_dir``.

    Returns ``out_dir``, which also receives ``model-<id>.json`` and ``run-<id>.json`` so that
    ``python -m epi_spineage.ingest out_dir --db FILE`` records the model and the run. Skipping of
    already-scored images happens at ingest (keyed inserts), not here.
    """
    import ray

    from epi_spineage.db import store as db
    from epi_spineage.db.results import now_utc
    from epi_spineage.model.checkpoint import load_checkpoint
    from epi_spineage.privacy import require_key
    from epi_spineage.provenance import new_run_id
    from epi_spineage.score.members import iter_members
    from epi_spineage.score.pipeline import ScoreSummary, _resolve_archives

    key_bytes = require_key(key, key_file)
    paths = _resolve_archives(archives)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id()
    started = now_utc()
    items = []
    for name, size, member in iter_members(paths):
        if isinstance(member, Exception):
            raise UserError(f"cannot list {name}: {member}")
        items.append({"name": name, "size": size})
    if not items:
        raise UserError("no files found in the archives given")
    loaded = load_checkpoint(Path(model_dir), map_location="cpu")
    ds: ray.data.Dataset = ray.data.from_items(items)
    ds = ds.map_batches(
        _ScoreBatch,
        fn_constructor_kwargs={
            "model_dir": str(model_dir),
            "key": key_bytes,
            "run_id": run_id,
            "include_non_spine": include_non_spine,
            "device": device,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        concurrency=concurrency,
        num_gpus=num_gpus,
        num_cpus=num_cpus,
    )
    ds.write_parquet(str(out / "shards"))
    _write_json(out / f"model-{loaded.model_id}.json", db.model_row(loaded))
    summary = ScoreSummary(run_id=run_id, model_id=loaded.model_id, device=f"ray:{device}", n_seen=len(items))
    from epi_spineage.db.paths import hash_path

    # archives in their stored form, as the scorer writes them (docs/privacy.md#stored-paths)
    row = summary.to_run_row(started, [hash_path(p, key_bytes) for p in paths], "finished", finished_at=now_utc())
    for name in ("n_scored", "n_skipped_known", "n_not_spine", "n_duplicates", "n_errors", "n_spooled"):
        row[name] = None  # known only after ingest resolves duplicates
    _write_json(out / f"run-{run_id}.json", row)
    return out


def _write_json(path: Path, row: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(row, default=str, sort_keys=True))
    os.replace(tmp, path)
