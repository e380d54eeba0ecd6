"""Where results become messages and leave: payloads, the durable outbox, the MQTT link."""
