"""A sweep cut into shards (`compare --shard I/N`): what each shard's results file records of the sweep it
belongs to, and the merge of the shards of one sweep back into one run for report, diff, plot and publish.

Each shard is a complete results file (its own host probes, environment, worker processes); its `sweep`
field names the sweep (an id hashed from the whole sweep's planned cells and the threadbench revision), its
shard number and the count, and the whole plan: the sweep's cells and, per worker process (a round of a
process group), the shard that runs it. So a merge knows exactly what a missing shard would have measured and
says so, and shards of another plan or revision are refused rather than pooled. Plain data: it measures and
renders nothing."""
from __future__ import annotations

import hashlib
import json

from . import results
from .cells import UNAVAILABLE, Cell


def sweep_id(plan: list[dict], revision: str | None) -> str:
    """The id of a sweep: its planned cell processes (every cell, once per round) and the code's revision."""
    text = json.dumps({"plan": plan, "revision": revision}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def record(sid: str, shard: int, shards: int, revision: str | None, units: list[tuple[int, int, list[dict]]]) -> dict:
    """The `sweep` field of a shard's results file. `units`: per worker process of the whole sweep, in run
    order, (round, shard 1-based, its cells as dicts); the cells are stored once and named by index."""
    cells: list[dict] = []
    index: dict[str, int] = {}
    out_units = []
    for rnd, owner, members in units:
        ids = []
        for d in members:
            key = json.dumps({**d, "repeat": 0}, sort_keys=True, default=str)
            if key not in index:
                index[key] = len(cells)
                cells.append({**d, "repeat": 0})
            ids.append(index[key])
        out_units.append([rnd, owner, ids])
    return {"id": sid, "shard": shard, "shards": shards, "revision": revision, "cells": cells, "units": out_units}


def merge(runs: list[dict]) -> list[dict]:
    """`runs` with the shards of each sweep replaced by one merged run (in the place of its first shard);
    runs that are not shards pass through. A merged run keeps every shard's rows, worker processes, host
    probes and time split (each tagged with its shard), names its shards in `shards` and each missing shard
    in `missing_shards` (a sentence: which cell processes, and which cells have no figures at all). Refused
    with one line (ResultsError): the same shard twice, or shards of different sweeps of one machine given
    together when any of them is incomplete (they cannot be told apart from the halves of one sweep); sweeps
    of different machines (the files' `machine`, compare --machine) are told apart by it."""
    by_sweep: dict[str, list[dict]] = {}
    for run in runs:
        if isinstance(run.get("sweep"), dict):
            by_sweep.setdefault(run["sweep"]["id"], []).append(run)
    if not by_sweep:
        return runs
    incomplete = [sid for sid, group in by_sweep.items() if len(group) < group[0]["sweep"]["shards"]]
    machine = {sid: group[0].get("machine") for sid, group in by_sweep.items()}
    for sid in incomplete:
        beside = [other for other in by_sweep if other != sid and machine[other] == machine[sid]]
        if not beside:
            continue
        a, b = by_sweep[sid][0], by_sweep[beside[0]][0]
        raise results.ResultsError(
            f"shards of different sweeps given together: {_name(a)} and {_name(b)} "
            f"({_differ(a['sweep'], b['sweep'])}); the shards of one sweep share its plan and revision: "
            "re-run the odd ones with the same options at one revision, or give each sweep alone")
    merged = {sid: _merge(group) for sid, group in by_sweep.items()}
    out, done = [], set()
    for run in runs:
        sid = run.get("sweep", {}).get("id") if isinstance(run.get("sweep"), dict) else None
        if sid is None:
            out.append(run)
        elif sid not in done:
            done.add(sid)
            out.append(merged[sid])
    return out


def _name(run: dict) -> str:
    s = run["sweep"]
    return f"{run.get('_path', run['run_id'])} (shard {s['shard']}/{s['shards']} of sweep {s['id']})"


def _differ(a: dict, b: dict) -> str:
    if a.get("revision") != b.get("revision"):
        return f"revisions {a.get('revision')} and {b.get('revision')}"
    if a["shards"] != b["shards"]:
        return f"cut into {a['shards']} and {b['shards']} shards"
    return "different plans: other cells, settings or rounds"


def _merge(group: list[dict]) -> dict:
    group = sorted(group, key=lambda r: r["sweep"]["shard"])
    numbers = [r["sweep"]["shard"] for r in group]
    for a, b in zip(group, group[1:]):
        if a["sweep"]["shard"] == b["sweep"]["shard"]:
            raise results.ResultsError(f"{_name(a)} and {_name(b)} are the same shard; keep one (a re-run of a "
                                       "lost shard replaces its earlier file)")
    sweep = group[0]["sweep"]
    sid = sweep["id"]
    run_id = f"sweep-{sid}"
    base = group[0]
    merged = {k: v for k, v in base.items() if k not in ("sweep", "_path")}
    merged.update(run_id=run_id, created=min(r["created"] for r in group), rows=[], cells=[], processes=[],
                  host_probe=[], time_split=[], backend_env={})
    merged["sweep"] = {k: v for k, v in sweep.items() if k != "shard"}
    merged["shards"] = [{"shard": r["sweep"]["shard"], "run_id": r["run_id"], "created": r["created"],
                         "host": r["host"].get("host"), "command": r["command"], "file": r.get("_path"),
                         "threadbench_revision": r["host"].get("threadbench_revision")} for r in group]
    seen_unavailable = set()
    for r in group:
        tag = r["sweep"]["shard"]
        for row in r["rows"]:
            if row["status"] == UNAVAILABLE:   # every shard records the cells that cannot run: once here
                if results.process_key(row) in seen_unavailable:
                    continue
                seen_unavailable.add(results.process_key(row))
            merged["rows"].append({**row, "run_id": run_id, "machine": base["host"].get("host")})  # one machine
        merged["cells"] += r["cells"]
        merged["processes"] += [{**p, "shard": tag} for p in r.get("processes", [])]
        merged["host_probe"] += [{**p, "shard": tag} for p in r.get("host_probe", [])]
        merged["time_split"] += [{**t, "shard": tag} for t in r.get("time_split", [])]
        for key, env in r["backend_env"].items():
            merged["backend_env"].setdefault(key, env)
    declared = sorted({b for r in group for b in r.get("sync_waits_declared", [])})   # results.declare_sync_waits
    if declared:
        merged["sync_waits_declared"] = declared
    merged["plan"] = [{**sweep["cells"][i], "repeat": rnd} for rnd, _, ids in sweep["units"] for i in ids]
    merged["missing_shards"] = [missing_line(sweep, j, numbers) for j in range(1, sweep["shards"] + 1)
                                if j not in numbers]
    merged["_path"] = base.get("_path")
    merged["_paths"] = [r.get("_path") for r in group]
    return merged


def missing_line(sweep: dict, shard: int, present: list[int]) -> str:
    """What a missing shard leaves out: its cell processes (by round) and the cells no shard present measured."""
    mine = [(rnd, i) for rnd, owner, ids in sweep["units"] if owner == shard for i in ids]
    kept = {i for rnd, owner, ids in sweep["units"] if owner in present for i in ids}
    bare = sorted({i for _, i in mine} - kept)
    rounds = ", ".join(str(r + 1) for r in sorted({rnd for rnd, _ in mine}))
    labels = [Cell.from_dict(sweep["cells"][i]).label() for i in bare]
    shown = ", ".join(labels[:8]) + (f" and {len(labels) - 8} more" if len(labels) > 8 else "")
    return (f"shard {shard}/{sweep['shards']} of sweep {sweep['id']} is missing: {len(mine)} cell processes "
            f"(round{'s' if ',' in rounds else ''} {rounds}) are not in the figures; "
            + (f"cells {shown} have no figures" if labels else "every cell has processes from the other shards, "
               "so its interval spans fewer processes")
            + f"; re-run it alone with the same options and --shard {shard}/{sweep['shards']}")
