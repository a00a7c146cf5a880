"""gen: one YAML spec -> a secure ESP32 <-> Mosquitto MQTT link (firmware, broker config, PKI)."""

__version__ = "0.1.0"
