# The simulated board: what `tools/sim` runs. Same front end as the ESP32 DevKitC board, with the
# hardware layer replaced by its simulated twin (tools/simhw/hal_sim.py).
NAME = "sim"
HAL = "hal_sim"
ADC_PINS = {"v1": 36, "v2": 39, "v3": 34, "i1": 35, "i2": 32, "i3": 33}
ADC_BITS = 12
ADC_READ_US = 35
# 390 V full range: 390 * sqrt(2) = 551.5 V peak on a 2048-count half range with 10 % headroom.
V_PER_COUNT = 0.2993
# Rated current * 1.2 * sqrt(2) fills about 1850 counts of the 2048-count half range.
A_PER_COUNT = {"home": 0.0917, "public": 0.3669}
BUTTON_PIN = 0
# The simulated board has a LAN port too (scenario "lan": {"link": true}) so LAN-first can be tried.
LAN = {"phy": "LAN8720", "phy_addr": 0, "mdc": 23, "mdio": 18, "power": 12, "clock": "GPIO17_OUT"}
STATUS_LED = 2
