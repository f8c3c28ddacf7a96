"""`medspark nightly`: the day's new images through every job, in one Spark session, safe to
kill and re-run, ending in a morning report.

    ingest -> masks -> preprocess -> features -> predict -> discover -> report

Each stage is the job itself (the same function `medspark <job>` runs), restricted to the
night's images: ingest lists the inputs and skips files already ingested; the derived jobs take
the images of `ingest_date = <date>` that their table does not hold yet; predict scores the
night's features not yet predicted by the model. Every stage publishes each table in one Delta
commit, so a re-run of a killed night redoes only what was not committed, and a re-run of a
finished night commits nothing new. One run per lake at a time (`medspark.nightly.lock`).

State: `_runs/nightly-<date>.json`, rewritten after every stage (status ok / failed / skipped
with why, counts, durations, outputs with the versions committed). Exit codes: 0 all stages ok,
1 finished but something needs a person, 2 configuration error, 3 the lake is locked.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import SparkSession

from medspark.config import ConfigError, Settings, settings_dict
from medspark.faults import crash_point
from medspark.jsonable import short_hash
from medspark.lake import Lake, new_run_id
from medspark.nightly.lock import acquire
from medspark.nightly.progress import Progress, TaskPoller
from medspark.spark.ingest import IngestRequest, run_ingest
from medspark.versions import library_versions

log = logging.getLogger(__name__)
EXIT_OK, EXIT_ATTENTION, EXIT_CONFIG, EXIT_LOCKED = 0, 1, 2, 3
STAGES = ("ingest", "masks", "preprocess", "features", "predict", "discover", "report")
# a stage runs only when the stages it needs did not fail
NEEDS = {"masks": ("ingest",), "preprocess": ("ingest",), "features": ("ingest",),
         "predict": ("features",), "discover": ("features",), "report": ()}


@dataclass
class NightlyRequest:
    """One night: the ingest inputs, the lake, the date and the model to score with."""

    ingest: IngestRequest
    date: dt.date
    model: str = "latest"  # a model id or folder, `latest`, or `none`

    @property
    def lake(self) -> str:
        return self.ingest.lake


@dataclass
class StageResult:
    name: str
    status: str = "pending"  # ok | failed | skipped
    reason: str | None = None
    run_id: str | None = None
    duration_s: float | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    needs_attention: list[str] = field(default_factory=list)

    def doc(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def _committed(outputs: dict[str, Any]) -> bool:
    """Whether a stage's outputs include a table commit (a version) made by this run."""
    return any(isinstance(v, dict) and v.get("version") is not None for v in outputs.values())


def night_settings(settings: Settings, date: dt.date) -> Settings:
    """The settings of one night: ingest partitions by the night's date."""
    ingest = settings.ingest.model_copy(update={"ingest_date": date})
    return settings.model_copy(update={"ingest": ingest})


def config_hash(settings: Settings) -> str:
    """The settings' identity in the state file (a stage is reused only under the same)."""
    return short_hash(settings_dict(settings))


def resolve_model(lake: Lake, model: str) -> str | None:
    """The model folder to score with, or None (`none`, or `latest` with no model yet)."""
    import os

    from medspark.spark.predict import resolve_model as find

    if model == "none":
        return None
    if model == "latest":
        root = lake.path("models")
        dirs = [os.path.join(root, d) for d in os.listdir(root)
                if os.path.isfile(os.path.join(root, d, "metadata.json"))] \
            if os.path.isdir(root) else []
        return max(dirs, key=os.path.getmtime) if dirs else None
    return find(lake, model)


class Night:
    """One nightly run: stages in order, state written after each."""

    def __init__(self, spark: SparkSession, settings: Settings, request: NightlyRequest,
                 key: bytes, progress: Progress):
        self.spark, self.request, self.key, self.progress = spark, request, key, progress
        self.settings = night_settings(settings, request.date)
        self.lake = Lake(request.lake)
        self.run_id = new_run_id("nightly")
        self.started = time.time()
        self.results: dict[str, StageResult] = {s: StageResult(s) for s in STAGES}
        self.manifests: dict[str, dict[str, Any]] = {}
        self.took_over: dict[str, Any] | None = None
        self.previous = self._previous_state()

    @property
    def state_path(self) -> str:
        return f"{self.lake.path('_runs')}/nightly-{self.request.date.isoformat()}.json"

    def _previous_state(self) -> dict[str, Any] | None:
        try:
            with open(self.state_path) as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return None

    # -- running -----------------------------------------------------------------------------
    def run(self) -> tuple[dict[str, Any], int]:
        lock = acquire(self.lake.root, self.request.date.isoformat(),
                       self.settings.nightly.lock_timeout_hours)
        assert lock is not None
        try:
            if lock.took_over:
                self.took_over = lock.took_over
                log.warning("nightly: took over the lake lock of a run that died (%s)",
                            lock.took_over)
                self.progress.event("lock", "taken_over", previous=lock.took_over)
            if self.previous and self.previous.get("status") == "running":
                self.progress.event("nightly", "resume",
                                    previous_run=self.previous.get("run_id"))
            self._write_state()  # a run killed from here on leaves its trace
            model_dir = resolve_model(self.lake, self.request.model)
            self._stage("ingest", self._ingest)
            crash_point("nightly:after-ingest")
            self._stage("masks", self._masks)
            self._stage("preprocess", self._preprocess)
            self._stage("features", self._features)
            crash_point("nightly:after-features")
            self._stage("predict", lambda: self._predict(model_dir),
                        skip=None if model_dir else (
                            "--model none" if self.request.model == "none"
                            else "no model trained yet (medspark train)"))
            self._stage("discover", self._discover, skip=self._discover_skip(),
                        reuse=self._reusable("discover"))
            self._stage("report", self._report)
            state = self._write_state(final=True)
        finally:
            lock.release()
        return state, state["exit_code"]

    def _reusable(self, name: str) -> dict[str, Any] | None:
        """The previous run's result of stage `name` for this night, when it finished ok with
        the same settings and no stage of this run has committed anything since: its output
        would be the same, so it is not recomputed (a re-run after a crash or of a finished
        night). Only for stages over the whole night whose re-run is not already a no-op."""
        prev = self.previous or {}
        if prev.get("config_hash") != config_hash(self.settings):
            return None
        old = next((s for s in prev.get("stages", []) if s.get("name") == name), None)
        if not old or old.get("status") != "ok":
            return None
        if any(_committed(r.outputs) for r in self.results.values() if r.name != name):
            return None
        return old

    def _stage(self, name: str, fn: Callable[[], dict[str, Any]],
               skip: str | None = None, reuse: dict[str, Any] | None = None) -> None:
        result = self.results[name]
        failed = [d for d in NEEDS.get(name, ()) if self.results[d].status == "failed"]
        if failed:
            skip = f"{', '.join(failed)} failed"
        if reuse and not skip:
            result.status, result.run_id = "ok", reuse.get("run_id")
            result.counts, result.outputs = reuse.get("counts") or {}, reuse.get("outputs") or {}
            result.reason = f"done by run {reuse.get('run_id')}; nothing new since"
            result.duration_s = 0.0
            self.progress.event(name, "reused", reason=result.reason)
            self._write_state()
            return
        if skip:
            result.status, result.reason = "skipped", skip
            self.progress.event(name, "skipped", reason=skip)
            self._write_state()
            return
        self.progress.event(name, "start")
        t0 = time.time()
        try:
            with TaskPoller(self.progress, name, self._tasks):
                manifest = fn()
            result.status = "ok"
            result.run_id = manifest.get("run_id")
            result.counts = manifest.get("counts", {})
            result.outputs = manifest.get("outputs", {})
            result.needs_attention = _attention(name, result.counts)
            self.manifests[name] = manifest
        except Exception as e:  # noqa: BLE001 - a failed stage is reported, the night goes on
            result.status = "failed"
            result.reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}" \
                if str(e) else type(e).__name__
            log.error("nightly stage %s failed:\n%s", name, traceback.format_exc())
        result.duration_s = round(time.time() - t0, 3)
        self.progress.event(name, result.status, seconds=result.duration_s,
                            reason=result.reason, **_headline(name, result.counts))
        self._write_state()

    def _tasks(self) -> tuple[int, int]:
        tracker = self.spark.sparkContext.statusTracker()
        infos = [tracker.getStageInfo(i) for i in tracker.getActiveStageIds()]
        infos = [i for i in infos if i is not None]
        return (sum(i.numCompletedTasks for i in infos), sum(i.numTasks for i in infos))

    # -- the stages ----------------------------------------------------------------------------
    def _ingest(self) -> dict[str, Any]:
        return run_ingest(self.spark, self.settings, self.request.ingest, self.key)

    def _masks(self) -> dict[str, Any]:
        from medspark.spark.masks import run_masks

        return run_masks(self.spark, self.settings, self.lake.root, self.key,
                         dates=[self.request.date])

    def _preprocess(self) -> dict[str, Any]:
        from medspark.spark.imaging import run_preprocess

        return run_preprocess(self.spark, self.settings, self.lake.root, [self.request.date])

    def _features(self) -> dict[str, Any]:
        from medspark.spark.imaging import run_features

        return run_features(self.spark, self.settings, self.lake.root, [self.request.date])

    def _predict(self, model_dir: str) -> dict[str, Any]:
        from medspark.spark.imaging import feature_set_hash
        from medspark.spark.predict import run_predict

        return run_predict(self.spark, self.settings, self.lake.root, model_dir,
                           run_date=self.request.date, dates=[self.request.date],
                           feature_set=feature_set_hash(self.settings))

    def _discover_skip(self) -> str | None:
        if not self.settings.nightly.discover:
            return "nightly.discover is false"
        try:
            import medspark.spark.discover  # noqa: F401
        except ImportError:
            return "medspark discover is not available"
        return None

    def _discover(self) -> dict[str, Any]:
        from medspark.discover.request import DiscoverRequest
        from medspark.spark.discover import run_discover
        from medspark.spark.imaging import feature_set_hash

        cfg = self.settings.discover.model_copy(update={"run_date": self.request.date})
        settings = self.settings.model_copy(update={"discover": cfg})
        request = DiscoverRequest(lake=self.lake.root, dates=[self.request.date],
                                  feature_set=feature_set_hash(self.settings))
        request.validate(cfg)
        return run_discover(self.spark, settings, request)

    def _report(self) -> dict[str, Any]:
        from medspark.report import render_history, render_night
        from medspark.spark.night_report import night_summary

        summary = night_summary(self.spark, self.settings, self.lake, self.request.date,
                                self._state_doc(), self.manifests)
        folder = f"{self.lake.root}/reports/{self.request.date.isoformat()}"
        index = render_night(summary, folder)
        render_history(f"{self.lake.root}/reports")
        return {"counts": {"drift_flags": sum(f.flagged for f in (summary.data.features
                                                                   if summary.data else []))},
                "outputs": {"report": str(index),
                            "history": f"{self.lake.root}/reports/index.html"}}

    # -- state ---------------------------------------------------------------------------------
    def _state_doc(self) -> dict[str, Any]:
        stages = [self.results[s].doc() for s in STAGES]
        attention = [line for s in STAGES for line in self.results[s].needs_attention]
        attention += [f"stage {r.name} failed: {r.reason}" for r in self.results.values()
                      if r.status == "failed"]
        done = all(r.status in ("ok", "skipped") for r in self.results.values())
        exit_code = EXIT_ATTENTION if attention or not done else EXIT_OK
        return {
            "run_id": self.run_id, "job": "nightly", "date": self.request.date.isoformat(),
            "lake": self.lake.root, "inputs": list(self.request.ingest.inputs),
            "input_lists": list(self.request.ingest.input_lists),
            "model": self.request.model,
            "started_at": dt.datetime.fromtimestamp(self.started, dt.UTC).isoformat(),
            "duration_s": round(time.time() - self.started, 3),
            "stages": stages, "attention": attention, "exit_code": exit_code,
            "lock_taken_over": self.took_over,
            "previous_run": (self.previous or {}).get("run_id"),
            "attempt": int((self.previous or {}).get("attempt", 0)) + 1,
            "versions": library_versions(), "config_hash": config_hash(self.settings),
            "spark": {"master": self.spark.sparkContext.master,
                      "version": self.spark.version, "session": "one for every stage"},
        }

    def _write_state(self, final: bool = False) -> dict[str, Any]:
        doc = self._state_doc()
        doc["status"] = ("needs_attention" if doc["exit_code"] else "ok") if final \
            else "running"
        if final:
            doc["finished_at"] = dt.datetime.now(dt.UTC).isoformat()
        from medspark.lake import write_text

        write_text(self.state_path, json.dumps(doc, indent=2, sort_keys=True, default=str))
        doc["manifest_path"] = self.state_path
        return doc


def _attention(stage: str, counts: dict[str, Any]) -> list[str]:
    """What in a stage's counts needs a person in the morning."""
    out = []
    if stage == "ingest" and counts.get("all_files_accounted") is False:
        out.append("ingest: not every listed file is in the catalog or quarantine")
    for key in ("errors", "rejected"):
        n = counts.get(key) or 0
        if n:
            why = counts.get("errors_by_reason") or counts.get("rejected_by_step")
            out.append(f"{stage}: {n} image(s) failed ({why})")
    return out


def _headline(stage: str, counts: dict[str, Any]) -> dict[str, Any]:
    keys = {"ingest": ("files_listed", "files_skipped_already_ingested", "files_quarantined"),
            "masks": ("objects_processed", "masks"), "preprocess": ("images", "errors"),
            "features": ("rows", "errors"), "predict": ("predicted", "rejected"),
            "report": ("drift_flags",)}.get(stage, ())
    return {k: counts.get(k) for k in keys if k in counts}


def run_nightly(spark: SparkSession, settings: Settings, request: NightlyRequest, key: bytes,
                progress: Progress | None = None) -> tuple[dict[str, Any], int]:
    """Run one night; return its state document and the exit code for the scheduler."""
    if request.model not in ("latest", "none") and not request.model:
        raise ConfigError("--model: a model id or folder, 'latest' or 'none'")
    night = Night(spark, settings, request, key, progress or Progress())
    return night.run()
