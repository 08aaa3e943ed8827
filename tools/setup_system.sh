#!/usr/bin/env bash
# The Debian packages that `make sim` and `make test` start for real. As root they are installed with
# apt-get; otherwise one line names the command to run, and the make stops before any test starts.
set -euo pipefail

# command -> Debian package that provides it
need=()
check() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
check mosquitto mosquitto            # the broker of make sim and of the uplink tests
check chronyd chrony                 # an NTP server on loopback: make sim and the clock tests
check mosquitto_sub mosquitto-clients  # the README's examples: watch and send MQTT messages
check chromium chromium              # the portal's browser test (driven by Playwright)
check ip iproute2                    # network namespaces: a phone and a device on their own links
check openssl openssl                # a throw-away PKI for the TLS broker tests
check dig dnsutils                   # the README's example query of the captive DNS
check make make                      # building the ESP32-like MicroPython (tools/esp32like/build.py)
# ... as a 32-bit binary: gcc needs its 32-bit libraries
echo 'int main(void){return 0;}' | gcc -m32 -x c - -o /dev/null 2>/dev/null || need+=(gcc-multilib)

[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "setup: missing Debian packages; run: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "setup: installing ${need[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
