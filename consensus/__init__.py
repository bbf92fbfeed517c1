"""somnet's BFT consensus core: a pure, deterministic Tendermint state machine.

No I/O, no clock, no global randomness: events in, actions out (see messages.py).
"""

from consensus.quorum import AddResult, HeightVotes, VoteTally
from consensus.replica import ROUNDS_AHEAD_MAX, Replica

__all__ = ["ROUNDS_AHEAD_MAX", "AddResult", "HeightVotes", "Replica", "VoteTally"]
