"""`gen doctor`: each link from device to broker checked in order, every diagnosis a pure `judge_*` function
(steps), the network probes they judge (probes)."""
