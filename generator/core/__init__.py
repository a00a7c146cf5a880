"""The small shared core every concept builds on: errors and their exit codes, the tool's own paths, template
rendering, C string literals, atomic files with explicit modes, MQTT topics and the MQTT wire format."""
