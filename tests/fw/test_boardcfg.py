# Board descriptions: the shipped ones load, and a bad one is refused naming the board and field.
import boardcfg
from fwtest import raises

SHIPPED = ("esp32_devkitc", "olimex_esp32_poe", "wt32_eth01", "sim")
POE_LAN = {"phy": "LAN8720", "phy_addr": 0, "mdc": 23, "mdio": 18, "power": 12, "clock": "GPIO17_OUT"}


class FakeBoard:
    """A valid board (DevKitC-like) with the given fields changed; delete attributes to drop them."""

    def __init__(self, **changes):
        self.NAME = "test-board"
        self.HAL = "hal_esp32"
        self.ADC_PINS = {"v1": 36, "v2": 39, "v3": 34, "i1": 35, "i2": 32, "i3": 33}
        self.ADC_BITS = 12
        self.ADC_READ_US = 35
        self.V_PER_COUNT = 0.29
        self.A_PER_COUNT = {"home": 0.1, "public": 0.4}
        self.BUTTON_PIN = 0
        self.LAN = None
        self.STATUS_LED = None
        for k in changes:
            setattr(self, k, changes[k])


def refused(board):
    msg = str(raises(boardcfg.BoardError, boardcfg.validate, board))
    assert msg.startswith("board test-board: "), msg
    return msg


def four_inputs(**changes):
    pins = {"v1": 36, "i1": 35, "i2": 32, "i3": 33}
    pins.update(changes)
    return pins


def test_every_shipped_board_file_validates():
    for name in SHIPPED:
        board = boardcfg.load(name)
        assert board.NAME and board.HAL in ("hal_esp32", "hal_sim")


def test_device_boards_use_the_esp32_layer_and_only_adc1():
    for name in ("esp32_devkitc", "olimex_esp32_poe", "wt32_eth01"):
        board = boardcfg.load(name)
        assert board.HAL == "hal_esp32", name
        for pin in board.ADC_PINS.values():
            assert 32 <= pin <= 39, name


def test_boards_with_five_or_fewer_adc1_pins_measure_one_voltage():
    assert boardcfg.load("olimex_esp32_poe").MAX_VOLTAGE_INPUTS == 1
    assert boardcfg.load("wt32_eth01").MAX_VOLTAGE_INPUTS == 1
    devkit = boardcfg.load("esp32_devkitc")
    assert getattr(devkit, "MAX_VOLTAGE_INPUTS", 3) == 3 and len(devkit.ADC_PINS) == 6


def test_unknown_board_name_is_a_clear_error():
    msg = str(raises(boardcfg.BoardError, boardcfg.load, "no_such_board_xyz"))
    assert "no_such_board_xyz" in msg and "no such board" in msg


def test_a_good_fake_board_passes():
    assert boardcfg.validate(FakeBoard()).NAME == "test-board"
    assert boardcfg.validate(FakeBoard(ADC_PINS=four_inputs(), MAX_VOLTAGE_INPUTS=1, LAN=dict(POE_LAN),
                                       BUTTON_PIN=34, STATUS_LED=2))


def test_adc2_pin_is_refused_with_the_reason():
    msg = refused(FakeBoard(ADC_PINS={"v1": 36, "v2": 39, "v3": 34, "i1": 35, "i2": 25, "i3": 33}))
    assert msg == ("board test-board: ADC_PINS['i2'] = GPIO 25 is on ADC2, which stops working"
                   " while Wi-Fi is up; use ADC1 GPIO 32-39"), msg


def test_non_existent_and_non_adc_pins_are_refused():
    for bad in (20, 24, 28, 31, 40, -1, 99, "36", 36.0, True, None):
        msg = refused(FakeBoard(ADC_PINS=four_inputs(v1=bad), MAX_VOLTAGE_INPUTS=1))
        assert "ADC_PINS['v1']" in msg and "not an ESP32 GPIO" in msg, msg
    msg = refused(FakeBoard(ADC_PINS=four_inputs(i3=5), MAX_VOLTAGE_INPUTS=1))
    assert "ADC_PINS['i3'] = GPIO 5 has no ADC" in msg


def test_a_pin_used_twice_is_refused_naming_both_fields():
    msg = refused(FakeBoard(ADC_PINS=four_inputs(i1=36), MAX_VOLTAGE_INPUTS=1))
    assert "ADC_PINS['i1'] = GPIO 36 is already used by ADC_PINS['v1']" in msg
    msg = refused(FakeBoard(BUTTON_PIN=33))
    assert "BUTTON_PIN = GPIO 33 is already used by ADC_PINS['i3']" in msg
    assert "STATUS_LED = GPIO 0 is already used by BUTTON_PIN" in refused(FakeBoard(STATUS_LED=0))


def test_missing_required_and_unknown_channels_are_refused():
    assert "has no i3 input" in refused(FakeBoard(ADC_PINS={"v1": 36, "i1": 35, "i2": 32}))
    assert "has no v1 input" in refused(FakeBoard(ADC_PINS={"i1": 35, "i2": 32, "i3": 33}))
    msg = refused(FakeBoard(ADC_PINS=four_inputs(i4=34), MAX_VOLTAGE_INPUTS=1))
    assert "ADC_PINS['i4'] is not a channel" in msg
    assert "only one of v2 and v3" in refused(FakeBoard(ADC_PINS=four_inputs(v2=39)))
    assert "ADC_PINS must be a dict" in refused(FakeBoard(ADC_PINS=[36, 35, 32, 33]))


def test_every_missing_field_is_named():
    for field in boardcfg.REQUIRED_FIELDS:
        board = FakeBoard()
        delattr(board, field)
        msg = refused(board)
        assert (field + " is missing") in msg, msg
    board = FakeBoard()
    del board.NAME
    assert "NAME is missing" in str(raises(boardcfg.BoardError, boardcfg.validate, board))
    assert "NAME" in str(raises(boardcfg.BoardError, boardcfg.validate, FakeBoard(NAME="")))


def test_wrongly_typed_fields_are_refused():
    assert "HAL" in refused(FakeBoard(HAL=None))
    assert "ADC_BITS" in refused(FakeBoard(ADC_BITS=10))
    assert "ADC_BITS" in refused(FakeBoard(ADC_BITS="12"))
    assert "ADC_READ_US" in refused(FakeBoard(ADC_READ_US=35.5))
    assert "ADC_READ_US" in refused(FakeBoard(ADC_READ_US=0))
    assert "A_PER_COUNT must be a dict" in refused(FakeBoard(A_PER_COUNT=0.1))
    assert "LAN must be None or a dict" in refused(FakeBoard(LAN="LAN8720"))


def test_bad_scale_factors_are_refused():
    assert "V_PER_COUNT" in refused(FakeBoard(V_PER_COUNT=0))
    assert "V_PER_COUNT" in refused(FakeBoard(V_PER_COUNT=-0.3))
    assert "V_PER_COUNT" in refused(FakeBoard(V_PER_COUNT="0.29"))
    assert "has no 'public' sensor" in refused(FakeBoard(A_PER_COUNT={"home": 0.1}))
    assert "has no 'home' sensor" in refused(FakeBoard(A_PER_COUNT={"public": 0.4}))
    assert "A_PER_COUNT['home']" in refused(FakeBoard(A_PER_COUNT={"home": -1, "public": 0.4}))
    msg = refused(FakeBoard(A_PER_COUNT={"home": 0.1, "public": 0.4, "pro": 1.0}))
    assert "A_PER_COUNT['pro'] is not a sensor" in msg


def test_lan_pin_clashing_with_an_adc_input_is_refused():
    lan = dict(POE_LAN, mdio=32)
    msg = refused(FakeBoard(LAN=lan))
    assert "LAN['mdio'] = GPIO 32 is already used by ADC_PINS['i2']" in msg, msg


def test_lan_clock_and_rmii_pins_are_reserved():
    # GPIO0 is the PHY's clock input on the WT32-ETH01: the BOOT button cannot share it.
    msg = refused(FakeBoard(LAN=dict(POE_LAN, clock="GPIO0_IN"), BUTTON_PIN=0))
    assert "BUTTON_PIN = GPIO 0 is already used by LAN['clock']" in msg, msg
    msg = refused(FakeBoard(LAN=dict(POE_LAN), STATUS_LED=21))
    assert "STATUS_LED = GPIO 21 is already used by LAN RMII TX_EN" in msg, msg
    msg = refused(FakeBoard(LAN=dict(POE_LAN, power=19)))
    assert "LAN RMII TXD0" in msg and "GPIO 19" in msg, msg


def test_bad_lan_settings_are_refused():
    assert "LAN['clock']" in refused(FakeBoard(LAN=dict(POE_LAN, clock="GPIO5_OUT")))
    assert "LAN['phy']" in refused(FakeBoard(LAN=dict(POE_LAN, phy="W5500")))
    assert "LAN['phy_addr']" in refused(FakeBoard(LAN=dict(POE_LAN, phy_addr=32)))
    assert "LAN['reset'] is not a LAN setting" in refused(FakeBoard(LAN=dict(POE_LAN, reset=5)))
    lan = dict(POE_LAN)
    del lan["mdc"]
    assert "has no 'mdc'" in refused(FakeBoard(LAN=lan))
    assert boardcfg.validate(FakeBoard(LAN=dict(POE_LAN, power=None)))


def test_outputs_on_input_only_pins_are_refused():
    msg = refused(FakeBoard(ADC_PINS=four_inputs(), MAX_VOLTAGE_INPUTS=1, STATUS_LED=34))
    assert "STATUS_LED = GPIO 34 is input-only" in msg, msg
    msg = refused(FakeBoard(ADC_PINS=four_inputs(), MAX_VOLTAGE_INPUTS=1, LAN=dict(POE_LAN, mdc=39)))
    assert "LAN['mdc'] = GPIO 39 is input-only" in msg, msg
    # A button may sit on an input-only pin (with the board's own pull-up).
    assert boardcfg.validate(FakeBoard(ADC_PINS=four_inputs(), MAX_VOLTAGE_INPUTS=1, BUTTON_PIN=34))


def test_voltage_inputs_match_the_adc_channels():
    pins = four_inputs()
    msg = refused(FakeBoard(ADC_PINS=pins, MAX_VOLTAGE_INPUTS=3))
    assert "MAX_VOLTAGE_INPUTS = 3 needs v2 and v3" in msg, msg
    assert "MAX_VOLTAGE_INPUTS is missing" in refused(FakeBoard(ADC_PINS=pins))
    assert "MAX_VOLTAGE_INPUTS" in refused(FakeBoard(MAX_VOLTAGE_INPUTS=2))
    assert boardcfg.validate(FakeBoard(ADC_PINS=pins, MAX_VOLTAGE_INPUTS=1))
    assert boardcfg.validate(FakeBoard(MAX_VOLTAGE_INPUTS=1))   # 3 inputs fitted, only L1 used
