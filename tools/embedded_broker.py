"""A pip-installed MQTT broker (amqtt) for `make sim` on machines without mosquitto."""
import argparse
import asyncio
import logging

from amqtt.broker import Broker


async def serve(bind):
    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": bind}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    })
    await broker.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bind", default="127.0.0.1:1883")
    logging.basicConfig(level=logging.WARNING)
    try:
        asyncio.run(serve(p.parse_args().bind))
    except KeyboardInterrupt:
        pass
