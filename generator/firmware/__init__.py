"""The firmware concept: the PlatformIO project of each device (render), what the firmware can carry (limits), the
per-device NVS image and its reader, the frameworks' own compile flags, the fingerprint that says when two projects
make the same image, and what the firmware's serial log says about its link."""
