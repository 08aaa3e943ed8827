# The simulated board: what `tools/sim` runs. The ESP32 DevKitC's inputs on the same analog front end,
# with the hardware layer replaced by its simulated twin (tools/simhw/hal_sim.py).
# Front-end scale factors: see esp32_devkitc.py (same front end, same numbers), so the simulated
# ADC (tools/simhw/sim_adc.py) codes a current or voltage as a real board would.
NAME = "sim"
HAL = "hal_sim"
ADC_PINS = {"v1": 36, "v2": 39, "v3": 34, "i1": 35, "i2": 32, "i3": 33}
ADC_BITS = 12
ADC_READ_US = 35
V_PER_COUNT = 0.4728
A_PER_COUNT = {"home": 0.1465, "public": 0.5859}
ADC_MV_PER_COUNT = 0.8057
ADC_BIAS_V = 1.204
ADC_BIAS_CODE = 1319
ADC_LINEAR_CODES = (1, 2879)
BUTTON_PIN = 0
# Unlike the DevKitC, the simulated board has a LAN port too (scenario "lan": {"link": true}) so
# LAN-first can be tried, and a status LED.
LAN = {"phy": "LAN8720", "phy_addr": 0, "mdc": 23, "mdio": 18, "power": 12, "clock": "GPIO17_OUT"}
STATUS_LED = 2
