# Generic ESP32 DevKitC (WROOM-32) on the meter's analog front end. Wi-Fi only.
#
# Front end (same on every board): ADC at 11 dB, ~3.1 V over 4096 counts = 0.757 mV/count, inputs
# biased at mid-supply, +-1.45 V usable swing.
# Voltage: 390 V rms (the measuring range) * sqrt(2) = 551.5 V peak -> 1.45 V: ratio 380,
#   so 380 * 0.757 mV = 0.2877 V per count.
# Current: 15 ohm burden. Home CT 100 A:50 mA (2000 turns): 0.757 mV / 15 ohm * 2000 = 0.1009 A/count,
#   120 A peak gives 1.2 V. Public CT 400 A:50 mA (8000 turns): 0.4037 A/count, 480 A peak gives 1.27 V.
NAME = "esp32-devkitc"
HAL = "hal_esp32"
ADC_PINS = {"v1": 36, "v2": 39, "v3": 34, "i1": 35, "i2": 32, "i3": 33}
ADC_BITS = 12
ADC_READ_US = 35
V_PER_COUNT = 0.2877
A_PER_COUNT = {"home": 0.1009, "public": 0.4037}
BUTTON_PIN = 0          # the BOOT button
LAN = None
STATUS_LED = None       # DevKitC has no user LED
