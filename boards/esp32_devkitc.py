# Generic ESP32 DevKitC (ESP32-WROOM-32) on the meter's analog front end. Wi-Fi only.
# All six inputs on ADC1 (GPIO 32-39; ADC2 stops working while Wi-Fi is up), so L1-L3 voltages
# can all be measured.
#
# Front end (the same on every device board):
#   ADC at 11 dB attenuation: ~3.1 V full scale over 4096 counts = 0.7568 mV per count. Every input
#   sits on a mid-supply bias (10k/10k from 3.3 V, 1.65 V) and may swing +-1.45 V around it.
#   Voltage: resistor divider 990 kOhm (3 x 330 kOhm for the voltage rating) over 2.61 kOhm, ratio
#     380.3: 390 V rms (the measuring range) * sqrt(2) = 551.5 V peak -> 1.450 V at the pin.
#     V_PER_COUNT = 380.3 * 0.7568 mV = 0.2878 V.
#   Current: 15 ohm burden on a 50 mA-secondary CT, amps per count = 0.7568 mV / 15 ohm * turns.
#     Home CT 100 A : 50 mA (2000 turns): 0.1009 A; Public CT 400 A : 50 mA (8000 turns): 0.4036 A.
#     1.2 x rated current peaks at 1.2 * sqrt(2) * 50 mA * 15 ohm = 1.27 V: 20 % overload headroom.
NAME = "esp32-devkitc"
HAL = "hal_esp32"
ADC_PINS = {"v1": 36, "v2": 39, "v3": 34, "i1": 35, "i2": 32, "i3": 33}
ADC_BITS = 12
ADC_READ_US = 35
V_PER_COUNT = 0.2878
A_PER_COUNT = {"home": 0.1009, "public": 0.4036}
BUTTON_PIN = 0          # the BOOT button (pulled up on the board; only sampled after boot)
LAN = None
STATUS_LED = None       # the DevKitC has a power LED only
