"""When the daemon tells systemd it is ready and alive: pure rules on what pipelines report.

READY=1 is sent once every pipeline is *settled*:
  - it has produced a prediction, or
  - its source is live and offline, being reopened with backoff (a camera that is
    unplugged or a stream that is down: the pipeline is open for business and waiting,
    with its model loaded; holding READY back would only make systemd kill it at
    TimeoutStartSec), or
  - it has ended (finished, stopped or failed): waiting longer cannot change anything.
A source that is open but delivers nothing, without reporting an error, is not settled:
READY waits (and systemd's TimeoutStartSec ends a start that never settles).

WATCHDOG=1 is sent every half ``WATCHDOG_USEC``, and only while nothing is stuck:
  - a running pipeline whose source is online must have finished an inference within
    ``stall_after_s`` = max(ping interval, STALL_FRAME_PERIODS periods of its fps cap);
  - a running pipeline whose live source is offline must show its retry loop alive: a
    failed read or reopen within ``retry_limit_s`` (the longest backoff delay plus the
    time an open may take). Down and retried is not hung; a hung reopen is;
  - a failed pipeline, or a dead broker link thread, stops the pings: a restart is the
    remedy, and systemd's watchdog does it;
  - finished and stopped pipelines are idle, not hung. A broker that is down is not a
    hang either: the link retries and the outbox spools.
All times are on the monotonic clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

STALL_FRAME_PERIODS = 3.0  # a capped source may take this many frame periods per frame
STATUS_REASON_CHARS = 60  # source/broker reasons are cut to this in STATUS= lines
ENDED_STATES = frozenset({"finished", "stopped", "failed"})


@dataclass(frozen=True)
class PipelineView:
    """What the rules need to know about one pipeline, sampled at one instant."""

    name: str
    state: str  # starting | running | finished | failed | stopped
    live: bool
    source_online: bool
    source_reason: str
    results: int
    last_progress_mono: float  # last finished inference (or when the pipeline was built)
    last_retry_mono: float | None  # last failed read/reopen of the live source
    fps_cap: float | None  # the source's configured fps, if any


def pipeline_ready(view: PipelineView) -> bool:
    """True once the pipeline is settled (see the module docstring)."""
    if view.results > 0 or view.state in ENDED_STATES:
        return True
    return view.live and not view.source_online and view.state == "running"


def not_ready(views: Sequence[PipelineView]) -> list[str]:
    """Names of the pipelines READY=1 still waits for."""
    return [v.name for v in views if not pipeline_ready(v)]


def stall_after_s(interval_s: float, fps_cap: float | None) -> float:
    """How long a running pipeline with an online source may go without an inference."""
    if fps_cap:
        return max(interval_s, STALL_FRAME_PERIODS / fps_cap)
    return interval_s


def pipeline_problem(view: PipelineView, now: float, interval_s: float,
                     retry_limit_s: float) -> str | None:
    """Why this pipeline should stop the watchdog pings, or None if it is fine."""
    if view.state == "failed":
        return "failed"
    if view.state != "running":
        return None
    if view.live and not view.source_online:
        anchor = view.last_retry_mono if view.last_retry_mono is not None else (
            view.last_progress_mono)
        quiet = now - anchor
        if quiet > retry_limit_s:
            return f"stuck reopening its source ({quiet:.0f} s without an attempt)"
        return None
    idle = now - view.last_progress_mono
    if idle > stall_after_s(interval_s, view.fps_cap):
        return f"stalled (no inference for {idle:.1f} s)"
    return None


def watchdog_problems(views: Sequence[PipelineView], now: float, interval_s: float,
                      retry_limit_s: float, link_alive: bool) -> dict[str, str]:
    """Everything that withholds WATCHDOG=1, by pipeline name (``mqtt`` for the link)."""
    problems = {v.name: p for v in views
                if (p := pipeline_problem(v, now, interval_s, retry_limit_s)) is not None}
    if not link_alive:
        problems["mqtt"] = "broker link thread is not running"
    return problems


def fps_since(previous: tuple[int, float] | None, results: int, now: float) -> float | None:
    """Predictions per second since ``previous`` = (results, monotonic time) was sampled."""
    if previous is None or now <= previous[1] or results < previous[0]:
        return None
    return (results - previous[0]) / (now - previous[1])


def _cut(text: str) -> str:
    return text if len(text) <= STATUS_REASON_CHARS else text[:STATUS_REASON_CHARS - 1] + "…"


def status_line(views: Sequence[PipelineView], fps: Mapping[str, float | None],
                problems: Mapping[str, str], broker_state: str, broker_reason: str,
                outbox_depth: int) -> str:
    """One ``STATUS=`` line for ``systemctl status``: each pipeline, the broker, the outbox."""
    parts = []
    for view in views:
        if view.name in problems:
            parts.append(f"{view.name} {problems[view.name]}")
        elif view.state in ENDED_STATES:
            parts.append(f"{view.name} {view.state}")
        elif view.live and not view.source_online and view.state == "running":
            parts.append(f"{view.name} source offline ({_cut(view.source_reason)}), retrying")
        elif view.results == 0:
            parts.append(f"{view.name} waiting for its first prediction")
        else:
            rate = fps.get(view.name)
            parts.append(f"{view.name} {rate:.1f} fps" if rate is not None
                         else f"{view.name} running")
    broker = f"mqtt {broker_state}"
    if "mqtt" in problems:
        broker += f" ({problems['mqtt']})"
    elif broker_state != "connected" and broker_reason:
        broker += f" ({_cut(broker_reason)})"
    return f"{', '.join(parts)}; {broker}; outbox {outbox_depth} queued"
