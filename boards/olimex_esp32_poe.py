# Olimex ESP32-POE / ESP32-POE-ISO: LAN8720 Ethernet (PoE powered) plus Wi-Fi.
# Of the ADC1 pins only four are free, so the board measures L1 voltage only (L2/L3 derived):
#   GPIO36  free (shared with U1RXD on UEXT: leave the UEXT UART unused)
#   GPIO35  free while the solder jumper BAT_SENS_E1 stays open (the default; closed = battery sense)
#   GPIO32, GPIO33  free on the EXT header
#   GPIO34  taken: button BUT1 (10k pull-up on the board)
#   GPIO39  taken: external power sense, 47k/100k divider from +5 V (always fitted since rev C)
# None of them clash with Ethernet: RMII on GPIO 19, 21, 22, 25, 26, 27, MDC 23, MDIO 18,
# 50 MHz clock out on GPIO17, PHY power switch on GPIO12.
# Front end (bias, divider, burden, scale factors): see esp32_devkitc.py (the same front end).
NAME = "olimex-esp32-poe"
HAL = "hal_esp32"
ADC_PINS = {"v1": 36, "i1": 35, "i2": 32, "i3": 33}
MAX_VOLTAGE_INPUTS = 1
ADC_BITS = 12
ADC_READ_US = 35
V_PER_COUNT = 0.4728
A_PER_COUNT = {"home": 0.1465, "public": 0.5859}
ADC_MV_PER_COUNT = 0.8057
ADC_BIAS_V = 1.204
ADC_BIAS_CODE = 1319
ADC_LINEAR_CODES = (1, 2879)
BUTTON_PIN = 34         # BUT1
LAN = {"phy": "LAN8720", "phy_addr": 0, "mdc": 23, "mdio": 18, "power": 12, "clock": "GPIO17_OUT"}
STATUS_LED = None
