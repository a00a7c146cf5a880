"""The flags each framework's own build compiles the firmware's sources with: language standard, warnings and
optimisation. Used by the host build (generator.simulate.host_build) and by the compile checks of the test suite,
so both compile the way `pio run` does. Defines, include paths and the CPU's own flags (-mlongcalls, -march) are not
here.

Where each flag set comes from:

- ESP-IDF v5.5.3 (what PlatformIO's espidf builder takes from IDF's CMake): tools/cmake/build.cmake:129-159
  (`__build_set_default_build_specifications`: the warning set, `-std=gnu17`, `-std=gnu++2b`), CMakeLists.txt:58-59
  (`-Og`: Kconfig's COMPILER_OPTIMIZATION defaults to DEBUG, Kconfig:340-342), CMakeLists.txt:74,80 (C++ without
  exceptions and RTTI, COMPILER_CXX_EXCEPTIONS / COMPILER_CXX_RTTI default n) and CMakeLists.txt:89
  (`-Wno-old-style-declaration` for C with GCC).
- Arduino-ESP32 2.0.17 (framework-arduinoespressif32 3.20017, which platform-espressif32 v6.13.0 pins in
  platform.json:85): tools/platformio-build-esp32.py:42-74, the CFLAGS, CXXFLAGS and CCFLAGS lists. The library
  builder that writes that file drops IDF's -Wall, -Werror=all and -Wextra (esp32-arduino-lib-builder release/v4.4
  tools/copy-libs.sh:97), so a sketch is compiled without them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FrameworkFlags:
    name: str
    c: tuple[str, ...]           # C only (standard first)
    cxx: tuple[str, ...]         # C++ only (standard first)
    common: tuple[str, ...]      # both: warnings and optimisation

    def for_language(self, language: str) -> tuple[str, ...]:
        """The flags for "c" or "c++" sources."""
        return (*(self.c if language == "c" else self.cxx), *self.common)


ESP_IDF = FrameworkFlags(
    name="ESP-IDF v5.5.3",
    c=("-std=gnu17", "-Wno-old-style-declaration"),
    cxx=("-std=gnu++2b", "-fno-exceptions", "-fno-rtti"),
    common=("-Og", "-Wall", "-Werror", "-Wno-error=unused-function", "-Wno-error=unused-variable",
            "-Wno-error=unused-but-set-variable", "-Wno-error=deprecated-declarations", "-Wextra",
            "-Wno-error=extra", "-Wno-unused-parameter", "-Wno-sign-compare", "-Wno-enum-conversion"),
)

ARDUINO_ESP32 = FrameworkFlags(
    name="Arduino-ESP32 2.0.17",
    c=("-std=gnu99", "-Wno-old-style-declaration"),
    cxx=("-std=gnu++11", "-fexceptions", "-fno-rtti"),
    common=("-Os", "-Wno-error=unused-function", "-Wno-error=unused-variable", "-Wno-error=deprecated-declarations",
            "-Wno-unused-parameter", "-Wno-sign-compare", "-Wwrite-strings", "-Wno-error=unused-but-set-variable"),
)

# gen's own bar on top of the framework's: the generated firmware is warning-free with these too (the host build
# fails on any warning, whatever -Wno-error the framework passes).
GEN_WARNINGS = ("-Wall", "-Wextra")

FRAMEWORK_FLAGS = {"espidf": ESP_IDF, "arduino": ARDUINO_ESP32}
