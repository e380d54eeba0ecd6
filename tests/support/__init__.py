"""Integration-test support: real Mosquitto, a fault-injecting TCP proxy, a seq subscriber."""
