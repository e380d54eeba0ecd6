"""Running under systemd: sd_notify, the readiness and watchdog rules, config reload."""
