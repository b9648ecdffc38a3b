"""MQTT -> Kafka gateway: validates telemetry and produces it to Kafka."""
