"""`gen simulate`: the generated firmware compiled for Linux against the host runtime (host_build), run against the
broker (run), and the pytest-embedded plugin that runs a project's device test on the host build."""
