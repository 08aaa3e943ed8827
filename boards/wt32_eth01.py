# WT32-ETH01 (Wireless-Tag): LAN8720 Ethernet plus Wi-Fi, no USB (program it over the UART pins).
# Only five ADC1 pins reach the headers (32, 33, 35, 36, 39; GPIO34 is not brought out), one short
# of 3 voltages + 3 currents: the board measures L1 voltage only (L2/L3 derived). GPIO33 stays free.
# GPIO0 receives the PHY's 50 MHz clock (whose oscillator GPIO16 enables) and is the boot strap, so
# the module has no usable button: fit a push button from GPIO4 to GND (GPIO4 is no strapping pin).
# Front end (bias, divider, burden, scale factors): see esp32_devkitc.py (the same front end).
NAME = "wt32-eth01"
HAL = "hal_esp32"
ADC_PINS = {"v1": 36, "i1": 39, "i2": 35, "i3": 32}
MAX_VOLTAGE_INPUTS = 1
ADC_BITS = 12
ADC_READ_US = 35
V_PER_COUNT = 0.4728
A_PER_COUNT = {"home": 0.1465, "public": 0.5859}
ADC_MV_PER_COUNT = 0.8057
ADC_BIAS_V = 1.204
ADC_BIAS_CODE = 1319
ADC_LINEAR_CODES = (1, 2879)
BUTTON_PIN = 4
LAN = {"phy": "LAN8720", "phy_addr": 1, "mdc": 23, "mdio": 18, "power": 16, "clock": "GPIO0_IN"}
STATUS_LED = None
