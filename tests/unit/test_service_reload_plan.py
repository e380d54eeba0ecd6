"""What a reload changes, decided by comparing two validated configs."""

from __future__ import annotations

from pathlib import Path

from edge_runtime.config import load_config
from edge_runtime.config.schema import Config
from edge_runtime.service.reload import plan_reload

BASE = """
device_id: dev
state_dir: /var/lib/edge-runtime
mqtt: {host: localhost, port: 1883}
pipelines:
  - name: a
    source: {type: synthetic, fps: 10}
    model: {path: a.tflite}
  - name: b
    source: {type: synthetic, fps: 10}
    model: {path: b.tflite}
"""


def config(overrides: list[str] | None = None, text: str = BASE) -> Config:
    return load_config(Path("/etc/edge-runtime/config.yaml"), overrides, text=text, env={})


def test_the_same_config_changes_nothing() -> None:
    plan = plan_reload(config(), config())
    assert not plan.changed
    assert plan.start == plan.stop == () and not plan.restart_link


def test_a_changed_pipeline_is_restarted_and_the_others_keep_running() -> None:
    plan = plan_reload(config(), config(["pipelines.1.source.fps=25"]))
    assert plan.stop == ("b",) and plan.start == ("b",)
    assert not plan.restart_link
    assert plan.config.pipelines[1].fps_limit() == 25


def test_added_and_removed_pipelines() -> None:
    two = config()
    one = config(text=BASE.split("  - name: b", maxsplit=1)[0])
    assert plan_reload(two, one).stop == ("b",) and plan_reload(two, one).start == ()
    assert plan_reload(one, two).start == ("b",) and plan_reload(one, two).stop == ()


def test_a_new_model_file_restarts_an_unchanged_pipeline() -> None:
    plan = plan_reload(config(), config(), models_changed=["a"])
    assert plan.changed and plan.stop == ("a",) and plan.start == ("a",)


def test_mqtt_and_identity_changes_restart_the_link_only() -> None:
    for override in ("mqtt.port=1884", "mqtt.keepalive_s=10", "device_id=other",
                     "outbox.max_inflight=10"):
        plan = plan_reload(config(), config([override]))
        assert plan.restart_link, override
        assert plan.start == plan.stop == (), override
    topic_prefix = plan_reload(config(), config(["mqtt.topic_prefix=plant"]))
    assert topic_prefix.restart_link  # the status topic moves too


def test_outbox_limits_and_log_level_apply_without_restarting_anything() -> None:
    plan = plan_reload(config(), config(["outbox.max_messages=500", "log_level=debug"]))
    assert plan.changed and not plan.restart_link and plan.start == plan.stop == ()
    assert plan.config.outbox.max_messages == 500 and plan.config.log_level == "debug"


def test_state_dir_is_deferred_and_keeps_its_running_value() -> None:
    plan = plan_reload(config(), config(["state_dir=/tmp/elsewhere", "log_level=debug"]))
    assert plan.deferred == ("state_dir",)
    assert plan.config.state_dir == Path("/var/lib/edge-runtime")
    assert plan.config.log_level == "debug"
