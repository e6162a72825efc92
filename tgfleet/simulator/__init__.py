"""tgfleet's Telegram simulator: a real MTProto 2.0 server on loopback that the unmodified
Telethon client talks to, with simulated users, flood limits, faults and a control API.

In tests::

    with SimulatorThread() as sim:            # or: async with Simulator() as sim
        bot = sim.create_bot()
        user = sim.create_user("Ann")
        client = new_client(sim.host, sim.port, sim.public_pem)
"""

from tgfleet.simulator.client import SimulatorApiError, SimulatorClient
from tgfleet.simulator.config import SimulatorConfig
from tgfleet.simulator.connect import connect_params, new_client, register_rsa_key, session_for
from tgfleet.simulator.limits import FloodLimits
from tgfleet.simulator.server import Simulator, aes_backend
from tgfleet.simulator.thread import SimulatorThread

__all__ = [
    "FloodLimits",
    "Simulator",
    "SimulatorApiError",
    "SimulatorClient",
    "SimulatorConfig",
    "SimulatorThread",
    "aes_backend",
    "connect_params",
    "new_client",
    "register_rsa_key",
    "session_for",
]
