from actors.hardware.sim_pigpiod import *  # noqa: F401,F403  (moved into the package; kept for old imports)
from actors.hardware.sim_pigpiod import PWM_FREQUENCIES, FakePigpiod  # noqa: F401  (names the tests import)
