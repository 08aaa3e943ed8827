# Generic ESP32 DevKitC (ESP32-WROOM-32) on the meter's analog front end. Wi-Fi only.
# All six inputs on ADC1 (GPIO 32-39; ADC2 stops working while Wi-Fi is up), so L1-L3 voltages
# can all be measured.
#
# Front end (the same on every device board), kept inside the ADC's linear range:
#   The ESP32's ADC1 at 11 dB is linear only from about 150 mV to 2450 mV (MicroPython's esp32
#   quickref; Espressif's characteristic in ESP-IDF's esp_adc_cal: a line of Vref * 196602 / 2^28 mV
#   per code above a 142 mV offset up to code 2880, then a knee to 4095 at ~3.13 V, where codes climb
#   ever faster). The knee starts at code 2880 on every chip, which is 2.25 V on a chip with the
#   lowest eFuse Vref (1000 mV) and 2.67 V at 1200 mV; the bottom is the offset, 142 mV (+-25 mV).
#   So every chip is linear over 0.17-2.22 V: the middle is 1.20 V, +-1.05 V around it.
#   On the typical chip (Vref 1100 mV) one count is 0.8057 mV: what the scale factors below assume;
#   each unit's own gain (+-9 % with the Vref) is corrected by the factory calibration
#   (tools/provision --calibrate, firmware/calibration.py).
#   Bias: 17.4 kOhm from 3.3 V over 10 kOhm (1 %, 10 uF across the lower one): 1.204 V, code ~1319.
#   Full-scale swing +-0.94 V (0.26-2.15 V at the pin), leaving ~80 mV at the top and ~90 mV at the
#   bottom for the bias's tolerances (3.3 V +-2 %, resistors) and a current's crest.
#   Voltage: resistor divider 990 kOhm (3 x 330 kOhm for the voltage rating) over 1.69 kOhm, ratio
#     586.8: 390 V rms (the measuring range) * sqrt(2) = 551.5 V peak -> 0.940 V at the pin.
#     V_PER_COUNT = 586.8 * 0.8057 mV = 0.4728 V.
#   Current: 11 ohm burden on a 50 mA-secondary CT, amps per count = 0.8057 mV / 11 ohm * turns.
#     Home CT 100 A : 50 mA (2000 turns): 0.1465 A; Public CT 400 A : 50 mA (8000 turns): 0.5859 A.
#     1.2 x rated current peaks at 1.2 * sqrt(2) * 50 mA * 11 ohm = 0.933 V: 20 % overload headroom.
#   Codes outside ADC_LINEAR_CODES count as clipped (the overrange flag): the knee is not measured.
# (Until issue 11 the bias was 1.65 V with +-1.45 V of swing: voltage peaks at 2.5-2.6 V and currents
# above ~75 % of rated ran into the knee. docs/metering.md has the accuracy before and after.)
NAME = "esp32-devkitc"
HAL = "hal_esp32"
ADC_PINS = {"v1": 36, "v2": 39, "v3": 34, "i1": 35, "i2": 32, "i3": 33}
ADC_BITS = 12
ADC_READ_US = 35
V_PER_COUNT = 0.4728
A_PER_COUNT = {"home": 0.1465, "public": 0.5859}
ADC_MV_PER_COUNT = 0.8057           # at the pin, for the typical chip (the simulator's front end)
ADC_BIAS_V = 1.204
ADC_BIAS_CODE = 1319                # where the firmware's bias tracking starts
ADC_LINEAR_CODES = (1, 2879)        # codes the ADC converts linearly on every chip
BUTTON_PIN = 0          # the BOOT button (pulled up on the board; only sampled after boot)
LAN = None
STATUS_LED = None       # the DevKitC has a power LED only
