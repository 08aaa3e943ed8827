# Olimex ESP32-POE: LAN8720 Ethernet (PoE powered) plus Wi-Fi.
# GPIO34 is the board's button BUT1, so five ADC1 inputs remain: L1 voltage only (L2/L3 derived).
# GPIO35 / GPIO39 carry the optional battery / power sensing only when their jumpers are closed:
# keep BAT_SENS_E1 and PWR_SENS_E1 open on a meter.
# Front-end scale factors: see esp32_devkitc.py (same front end).
NAME = "olimex-esp32-poe"
HAL = "hal_esp32"
ADC_PINS = {"v1": 36, "i1": 39, "i2": 35, "i3": 32}
MAX_VOLTAGE_INPUTS = 1
ADC_BITS = 12
ADC_READ_US = 35
V_PER_COUNT = 0.2877
A_PER_COUNT = {"home": 0.1009, "public": 0.4037}
BUTTON_PIN = 34         # BUT1, external pull-up on the board
LAN = {"phy": "LAN8720", "phy_addr": 0, "mdc": 23, "mdio": 18, "power": 12, "clock": "GPIO17_OUT"}
STATUS_LED = None
