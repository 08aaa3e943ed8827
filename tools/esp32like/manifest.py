# The host's ESP32-like runtime (tools/esp32like/build.py): the unix port's own frozen modules
# (asyncio, ssl) and the firmware exactly as an ESP32 image freezes it.
include("$(PORT_DIR)/variants/standard/manifest.py")
include("../../boards/manifest.py")
