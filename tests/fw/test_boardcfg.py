# Board descriptions: the shipped ones load, and a bad one is refused naming the board and field.
import boardcfg
from fwtest import raises

SHIPPED = ("esp32_devkitc", "olimex_esp32_poe", "wt32_eth01", "sim")


class FakeBoard:
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
    return str(raises(boardcfg.BoardError, boardcfg.validate, board))


def test_every_shipped_board_file_validates():
    for name in SHIPPED:
        board = boardcfg.load(name)
        assert board.NAME and board.HAL in ("hal_esp32", "hal_sim")


def test_unknown_board_name_is_a_clear_error():
    msg = str(raises(boardcfg.BoardError, boardcfg.load, "no_such_board_xyz"))
    assert "no_such_board_xyz" in msg and "no such board" in msg


def test_a_good_fake_board_passes():
    assert boardcfg.validate(FakeBoard()).NAME == "test-board"


def test_adc2_pin_is_refused_with_the_reason():
    pins = {"v1": 36, "v2": 39, "v3": 34, "i1": 35, "i2": 25, "i3": 33}
    msg = refused(FakeBoard(ADC_PINS=pins))
    assert "test-board" in msg and "ADC_PINS['i2']" in msg and "ADC2" in msg and "32-39" in msg


def test_non_existent_and_non_adc_pins_are_refused():
    for bad in (20, 24, 40, -1, 99):
        pins = {"v1": bad, "i1": 35, "i2": 32, "i3": 33}
        msg = refused(FakeBoard(ADC_PINS=pins))
        assert "ADC_PINS['v1']" in msg and "not an ESP32 GPIO" in msg
    msg = refused(FakeBoard(ADC_PINS={"v1": 5, "i1": 35, "i2": 32, "i3": 33}))
    assert "has no ADC" in msg


def test_duplicate_pin_missing_channel_and_unknown_channel_are_refused():
    assert "already used" in refused(FakeBoard(ADC_PINS={"v1": 36, "i1": 36, "i2": 32, "i3": 33}))
    assert "no i3 input" in refused(FakeBoard(ADC_PINS={"v1": 36, "i1": 35, "i2": 32}))
    assert "not a channel" in refused(FakeBoard(ADC_PINS={"v1": 36, "i1": 35, "i2": 32, "i3": 33,
                                                          "i4": 34}))


def test_missing_field_and_bad_scale_factors_are_refused():
    board = FakeBoard()
    del board.V_PER_COUNT
    assert "V_PER_COUNT is missing" in refused(board)
    assert "V_PER_COUNT" in refused(FakeBoard(V_PER_COUNT=0))
    assert "'public'" in refused(FakeBoard(A_PER_COUNT={"home": 0.1}))
    assert "A_PER_COUNT['home']" in refused(FakeBoard(A_PER_COUNT={"home": -1, "public": 0.4}))


def test_lan_pin_clashing_with_an_adc_input_is_refused():
    lan = {"phy": "LAN8720", "phy_addr": 0, "mdc": 23, "mdio": 32, "power": 12, "clock": "GPIO17_OUT"}
    msg = refused(FakeBoard(LAN=lan))
    assert "LAN['mdio']" in msg and "clashes" in msg


def test_three_voltage_inputs_need_v2_and_v3():
    pins = {"v1": 36, "i1": 35, "i2": 32, "i3": 33}
    assert "MAX_VOLTAGE_INPUTS" in refused(FakeBoard(ADC_PINS=pins, MAX_VOLTAGE_INPUTS=3))
    assert boardcfg.validate(FakeBoard(ADC_PINS=pins, MAX_VOLTAGE_INPUTS=1))
