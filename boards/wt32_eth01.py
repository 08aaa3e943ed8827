# WT32-ETH01 (Wireless-Tag): LAN8720 Ethernet plus Wi-Fi.
# Only five ADC1 pins reach the headers (32, 33, 35, 36, 39): L1 voltage only (L2/L3 derived).
# GPIO0 is the PHY's 50 MHz clock input and the boot strap, so the button sits on GPIO14.
# Front-end scale factors: see esp32_devkitc.py (same front end).
NAME = "wt32-eth01"
HAL = "hal_esp32"
ADC_PINS = {"v1": 36, "i1": 39, "i2": 35, "i3": 32}
MAX_VOLTAGE_INPUTS = 1
ADC_BITS = 12
ADC_READ_US = 35
V_PER_COUNT = 0.2877
A_PER_COUNT = {"home": 0.1009, "public": 0.4037}
BUTTON_PIN = 14
LAN = {"phy": "LAN8720", "phy_addr": 1, "mdc": 23, "mdio": 18, "power": 16, "clock": "GPIO0_IN"}
STATUS_LED = None
