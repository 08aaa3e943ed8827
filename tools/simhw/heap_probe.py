# The simulator's own share of the heap (tools/faults.py): the simulated hardware layer and its ADC, which
# a device does not have. Prints the bytes they hold after a collection.
import gc

gc.collect()
before = gc.mem_alloc()
import hal_sim  # noqa: E402
import sim as board  # noqa: E402

hal = hal_sim.Hal(board)
adc = hal.adc(("v1", "i1", "i2", "i3"))
gc.collect()
print(gc.mem_alloc() - before)
