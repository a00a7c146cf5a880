"""`gen build`, `gen flash`, `gen monitor` and `gen ci github`: PlatformIO run once per distinct firmware image
(plan, platformio), per-device artifacts ready to flash (artifacts), the whole build (run), flashing and the
serial monitor (flashing), the programs they need (tools), and the GitHub Actions workflow (ci_workflow).

    plan = plan_build(out_dir, read_manifest(out_dir), load_catalogue())   # which devices share an image
    result = run_build(plan, jobs=1)                                       # pio run + metadata + merge-bin, per image
"""
