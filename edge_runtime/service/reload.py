"""Configuration reload on SIGHUP: re-read, validate as start-up does, apply what changed.

The same file is read again with the same ``--set`` overrides and validated exactly as at
start-up (schema, then every new or changed model loaded and checked against its
pipeline, then the new sources opened). If anything fails, the errors are logged (config
errors as ``file:line: key: message``) and the daemon keeps running the old config.

Applying keeps the outbox (and so every queued message and each pipeline's ``seq``):
  - changed or removed pipelines are stopped and joined first, so frames they already
    captured still reach the outbox; then the new ones start. Unchanged pipelines keep
    running, also when only their model file's content changed on disk (a new sha256
    restarts them);
  - global topic settings (``device_id``, ``mqtt.topic_prefix``, ``mqtt.qos``) take effect
    on the next prediction of every pipeline;
  - changed ``mqtt`` settings restart the broker link: unacknowledged messages stay in the
    outbox and are sent again by the new connection;
  - outbox settings and ``log_level`` apply at once; ``state_dir`` and any other setting
    need a restart (logged; the running value is kept).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_runtime.config import load_config
from edge_runtime.config.schema import Config
from edge_runtime.errors import ConfigError, EdgeRuntimeError, SourceError
from edge_runtime.pipeline import ModelStages, Pipeline, resolve_threads
from edge_runtime.runners.model_file import read_model

if TYPE_CHECKING:
    from edge_runtime.supervisor import Daemon

log = logging.getLogger(__name__)

# top-level settings a running daemon can take over; every other one needs a restart
LIVE_SETTINGS = frozenset({"device_id", "log_level", "mqtt", "outbox", "pipelines"})


@dataclass(frozen=True)
class ReloadPlan:
    """What applying a new config changes. Pure data, from :func:`plan_reload`."""

    config: Config  # the config that will run: the new one, deferred settings kept old
    stop: tuple[str, ...]  # pipelines removed or changed
    start: tuple[str, ...]  # pipelines added or changed
    restart_link: bool
    deferred: tuple[str, ...]  # changed settings that need a restart
    changed: bool  # anything to apply at all


def plan_reload(old: Config, new: Config, models_changed: Collection[str] = ()) -> ReloadPlan:
    """Compare two validated configs. ``models_changed``: pipelines whose model file has
    new content on disk (restarted even though their config is the same)."""
    deferred = tuple(name for name in type(new).model_fields
                     if name not in LIVE_SETTINGS and getattr(old, name) != getattr(new, name))
    config = new.model_copy(update={name: getattr(old, name) for name in deferred})
    before = {p.name: p for p in old.pipelines}
    after = {p.name: p for p in config.pipelines}
    changed = {n for n in before.keys() & after.keys()
               if before[n] != after[n] or n in models_changed}
    stop = tuple(n for n in before if n not in after or n in changed)
    start = tuple(n for n in after if n not in before or n in changed)
    restart_link = (old.mqtt != config.mqtt or old.client_id() != config.client_id()
                    or old.status_topic() != config.status_topic()
                    or old.outbox.max_inflight != config.outbox.max_inflight)
    return ReloadPlan(config, stop, start, restart_link, deferred,
                      changed=config != old or bool(start))


def reload_config(daemon: Daemon) -> bool:
    """Re-read the daemon's config and apply it; False (old config running) if rejected."""
    daemon.service.reloading()
    log.info("reloading the configuration from %s", daemon.config_path)
    try:
        new = load_config(daemon.config_path, daemon.overrides)
        plan = plan_reload(daemon.config, new, _models_changed(daemon.pipelines, new))
        stages = _load_stages(plan)
    except EdgeRuntimeError as err:
        _log_rejected(err)
        daemon.service.reload_kept("configuration reload rejected (see the journal); still "
                                   "running the previous configuration")
        return False
    for name in plan.deferred:
        log.warning("reload: '%s' changed; it takes effect at the next restart", name)
    if not plan.changed:
        log.info("configuration unchanged")
        daemon.service.reload_kept("configuration unchanged")
        return True
    running = {p.name: p for p in daemon.pipelines}
    stopped = [running[name] for name in plan.stop]
    daemon.stop_pipelines(stopped)
    fresh = {p.name: daemon.build_pipeline(p, stages[p.name])
             for p in plan.config.pipelines if p.name in stages}
    problem = _open_sources(fresh.values())
    if problem is not None:
        _log_rejected(problem)
        log.error("reload: restarting the previous pipelines")
        _start_again(daemon, stopped)
        daemon.service.reload_kept("configuration reload rejected (see the journal); still "
                                   "running the previous configuration")
        return False
    _apply(daemon, plan, running, fresh)
    return True


def _models_changed(pipelines: Iterable[Pipeline], new: Config) -> list[str]:
    """Running pipelines kept by ``new`` whose model file now holds another model."""
    configs = {p.name: p for p in new.pipelines}
    return [p.name for p in pipelines
            if configs.get(p.name) == p.config
            and read_model(p.config.model.path).sha256 != p.stages.model.sha256]


def _load_stages(plan: ReloadPlan) -> dict[str, ModelStages]:
    count = len(plan.config.pipelines)
    return {p.name: ModelStages.load(p, resolve_threads(p.model.threads, count))
            for p in plan.config.pipelines if p.name in plan.start}


def _open_sources(pipelines: Iterable[Pipeline]) -> SourceError | None:
    """Open every source as start-up does; on the first failure close the opened ones."""
    opened: list[Pipeline] = []
    for pipeline in pipelines:
        try:
            pipeline.open_source()
        except SourceError as err:
            for done in opened:
                done.source.close()
            return err
        opened.append(pipeline)
    return None


def _start_again(daemon: Daemon, stopped: Sequence[Pipeline]) -> None:
    """Roll back: the stopped pipelines run again with their old config and models."""
    again = {}
    for old in stopped:
        pipeline = daemon.build_pipeline(old.config, old.stages)
        try:
            pipeline.open_source()
        except SourceError as err:
            if not pipeline.source.live:
                log.error("pipeline %s: %s", pipeline.name, err)
                pipeline.state, pipeline.error = "failed", err
                again[pipeline.name] = pipeline
                continue
            log.warning("pipeline %s: %s; retrying in the background", pipeline.name, err)
        pipeline.start()
        again[pipeline.name] = pipeline
    daemon.pipelines = [again.get(p.name, p) for p in daemon.pipelines]


def _apply(daemon: Daemon, plan: ReloadPlan, running: dict[str, Pipeline],
           fresh: dict[str, Pipeline]) -> None:
    config = plan.config
    daemon.sink.config = config
    daemon.outbox.max_messages = config.outbox.max_messages
    daemon.outbox.max_bytes = config.outbox.max_bytes
    daemon.outbox.drop_policy = config.outbox.drop_policy
    daemon.outbox.synchronous = config.outbox.sync
    logging.getLogger().setLevel(config.log_level.upper())
    if plan.restart_link:
        log.info("reload: mqtt settings changed; reconnecting (queued messages stay in "
                 "the outbox)")
        daemon.replace_link(config)
    for pipeline in fresh.values():
        pipeline.start()
    daemon.pipelines = [fresh.get(p.name) or running[p.name] for p in config.pipelines]
    daemon.config = config
    log.info("configuration reloaded: %s", "; ".join(
        f"{what} {', '.join(names)}" for what, names in (
            ("stopped", [n for n in plan.stop if n not in plan.start]),
            ("restarted", [n for n in plan.start if n in plan.stop]),
            ("started", [n for n in plan.start if n not in plan.stop]))
        if names) or "settings updated")


def _log_rejected(err: EdgeRuntimeError) -> None:
    """The same lines ``check-config`` prints, one log record each."""
    if isinstance(err, ConfigError) and err.problems:
        lines = [*err.problems, *([f"hint: {err.hint}"] if err.hint else [])]
    else:
        lines = [str(err)]
    for line in lines:
        log.error("reload rejected: %s", line)
