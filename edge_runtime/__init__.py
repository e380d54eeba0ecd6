"""edge-runtime: camera frames and sensor readings -> int8 TFLite models -> MQTT."""

__version__ = "0.1.0"
