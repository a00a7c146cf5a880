"""`gen logs`: a device's log, followed over MQTT (its log topic, as gen's read-only identity gen.logs).

    follow      the session as gen.logs and the lines as they arrive
"""
