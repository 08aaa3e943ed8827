# Device entry point, run by MicroPython at boot (and by tools/sim on the unix port).
import app

app.main()
