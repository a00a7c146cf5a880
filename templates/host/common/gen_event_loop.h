// Internal to the host runtime (not a device header).
#pragma once
bool gen_event_default_loop_exists(void);
