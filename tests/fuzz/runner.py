"""
How fuzz tests run: Hypothesis's settings for them (L{fuzz}), and
L{FuzzTestCase}, which plays lists of actions in fresh worlds.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from hypothesis import HealthCheck, seed, settings
from hypothesis.control import current_build_context
from twisted.trial.unittest import SynchronousTestCase

from chatd.limits import Limits
from tests.fuzz.actions import Action
from tests.fuzz.world import World

# For a longer or a different fuzz than CI's: CHATD_FUZZ_SCALE=10 runs ten
# times as many examples; CHATD_FUZZ_SEED=N draws other inputs than CI's.
SCALE = float(os.environ.get("CHATD_FUZZ_SCALE", "1"))
SEED = os.environ.get("CHATD_FUZZ_SEED")
FUZZ = settings(
    derandomize=SEED is None,
    database=None,
    deadline=None,
    print_blob=False,
    report_multiple_bugs=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
Test = TypeVar("Test", bound=Callable[..., None])


def fuzz(examples: int) -> Callable[[Test], Test]:
    """
    Settings for a fuzz test of C{examples} runs (scaled by
    C{$CHATD_FUZZ_SCALE}): derandomised, so that CI always tries the same
    inputs, unless C{$CHATD_FUZZ_SEED} picks a seed.
    """
    chosen = settings(FUZZ, max_examples=max(1, round(examples * SCALE)))

    def decorate(test: Test) -> Test:
        test = chosen(test)
        return test if SEED is None else seed(int(SEED))(test)

    return decorate


class FuzzTestCase(SynchronousTestCase):
    """
    Plays action lists in fresh worlds, and says how many inputs each door
    was fed.

    @cvar limits: the server's limits (flood control off by default).
    @cvar buffer_size: bytes a transport buffers for a peer that is not
        reading before it pauses the server's output.
    @cvar cluster: whether the hub is one node of a cluster.
    @cvar irc: whether the world has IRC connections (and the runs may
        then have IRC inputs and network events).
    """

    limits = Limits(flood_rate=0)
    buffer_size = 4096
    cluster = False
    irc = False

    def setUp(self) -> None:
        self.tally: Counter[str] = Counter()

    def tearDown(self) -> None:
        tally = self.tally
        print(
            f"\n{self.id()}: {tally['line']} line-door inputs, {tally['websocket']} "
            f"WebSocket-door inputs and {tally['irc']} IRC-door inputs ({tally['probes']} "
            f"PING probes; {tally['actions']} actions in {tally['runs']} runs)"
        )

    def play(self, actions: list[Action], shutdown: bool, web: bool) -> None:
        """
        Run C{actions}, checking everything after each, then end the run
        with a shutdown or with silence; WebSockets connect through the web
        site if C{web}.
        """
        self.tally["runs"] += 1
        world = None
        try:
            world = World(self, web)
            for action in actions:
                self.tally["actions"] += 1
                action.run(world)
                world.settle()
                world.check()
            world.finish(shutdown)
        except Exception:
            if current_build_context().is_final:
                # Hypothesis notes the failing run only where pytest shows it.
                print(f"\nFailing run (shutdown={shutdown}, web={web}):")
                for action in actions:
                    print(f"  {action!r}"[:300])
            raise
        finally:
            if world is not None:
                world.stop()
